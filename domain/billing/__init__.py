"""Billing operations on invoices and subscriptions, shared by the control plane (a new
subscription's first invoice, cancel now, advance a sandbox period — the Dashboard's
button too) and the invoicer (every
period that ends): each is one set-based Postgres transaction over a batch
(``domain.billing.batch``).

    close_periods ─► mark_closing ─► (settle) ─► finalize_invoices ─► collect_invoices
    (draft written)   (ingest stops)              (windows closed, open)  (charge, dunning)

Pure planning beside them: ``plan`` (what a period end does to a subscription) and
``retries`` (when a payment is attempted and what each attempt leads to).
"""

from domain.billing.clocks import advance_period, move_clock, require_sandbox, settle_clocks
from domain.billing.close import close_periods, open_first_invoice, upcoming_invoice
from domain.billing.dunning import Attempt, collect_invoices
from domain.billing.finalize import finalize_invoices, mark_closing
from domain.billing.rules import InvoiceRules

__all__ = [
    "Attempt",
    "InvoiceRules",
    "advance_period",
    "close_periods",
    "collect_invoices",
    "finalize_invoices",
    "mark_closing",
    "move_clock",
    "open_first_invoice",
    "require_sandbox",
    "settle_clocks",
    "upcoming_invoice",
]
