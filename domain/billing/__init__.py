"""Billing operations on invoices and subscriptions, shared by the control plane (a new
subscription's first invoice, cancel now, advance a sandbox period) and the invoicer (every
period that ends): each is one set-based Postgres transaction over a batch.

    close_periods ─► mark_closing ─► (settle) ─► finalize_invoices ─► collect_invoices
    (draft written)   (ingest stops)              (windows closed, open)  (charge, dunning)
"""

from domain.billing.clocks import settle_clocks
from domain.billing.dunning import Attempt, collect_invoices
from domain.billing.invoices import (
    close_periods,
    finalize_invoices,
    mark_closing,
    open_first_invoice,
)
from domain.billing.rules import InvoiceRules

__all__ = [
    "Attempt",
    "InvoiceRules",
    "close_periods",
    "collect_invoices",
    "finalize_invoices",
    "mark_closing",
    "open_first_invoice",
    "settle_clocks",
]
