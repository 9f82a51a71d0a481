"""Draft invoices: their lines, and writing them in bulk with the pending invoice items they
take and their ``invoice.created`` events."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from domain.billing.batch import int_array
from domain.events import Event, emit_events
from domain.store.invoices import load_invoices
from infra.ids import new_id
from infra.telemetry import M

__all__ = ["Draft", "Line", "insert_drafts", "invoice_item_line", "write_drafts"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Line:
    type: str  # "subscription" | "invoiceitem"
    item_pk: int | None
    price_id: str | None
    description: str
    quantity: int | Decimal  # decimal for a meter's usage
    unit_amount_decimal: str | None
    amount: int
    period_start: int
    period_end: int
    proration: bool = False


def invoice_item_line(ii: asyncpg.Record) -> Line:
    """The line a pending invoice item (a proration, a carried credit) becomes."""
    return Line(
        "invoiceitem",
        ii["item_pk"],
        ii["price_id"],
        ii["description"],
        int(ii["quantity"]),
        None,
        int(ii["amount"]),
        ii["period_start"],
        ii["period_end"],
        ii["proration"],
    )


@dataclass(slots=True)
class Draft:
    id: str
    account_id: str
    livemode: bool
    customer_pk: int
    subscription_id: str
    billing_reason: str
    currency: str
    period_start: int
    period_end: int
    finalize_at: int
    created: int
    lines: list[Line] = field(default_factory=list)
    invoice_items: list[str] = field(default_factory=list)


async def write_drafts(conn: asyncpg.Connection[Any], drafts: list[Draft]) -> list[Draft]:
    """Insert the drafts and their lines, take their pending invoice items, and queue
    ``invoice.created``; a draft whose period already has its invoice is left out."""
    written, events = await insert_drafts(conn, drafts)
    await emit_events(conn, events)
    return written


async def insert_drafts(
    conn: asyncpg.Connection[Any], drafts: list[Draft]
) -> tuple[list[Draft], list[Event]]:
    """``write_drafts`` without the outbox write: the drafts written and their
    ``invoice.created`` events, for the caller to queue in this transaction with its own (a
    period close queues its subscriptions' new state with them: one outbox write a batch)."""
    if not drafts:
        return [], []
    written = await _insert_invoices(conn, drafts)
    lines = [(d.id, n, ln) for d in written for n, ln in enumerate(d.lines, 1)]
    if lines:
        await _insert_lines(conn, lines)
    taken = [(d.id, item) for d in written for item in d.invoice_items]
    if taken:
        await conn.execute(
            "UPDATE invoice_items ii SET invoice_id = v.inv FROM unnest($1::text[], $2::text[])"
            " AS v(inv, id) WHERE ii.id = v.id",
            [t[0] for t in taken],
            [t[1] for t in taken],
        )
    rendered = await load_invoices(conn, [d.id for d in written])
    M.invoices.labels("draft").inc(len(written))
    return written, [
        Event(d.account_id, d.livemode, "invoice.created", rendered[d.id]) for d in written
    ]


async def _insert_invoices(conn: asyncpg.Connection[Any], drafts: list[Draft]) -> list[Draft]:
    """The drafts inserted: a second invoice for a period is refused by the database."""
    totals = [sum(ln.amount for ln in d.lines) for d in drafts]
    rows = await conn.fetch(
        "INSERT INTO invoices (id, account_id, livemode, customer_pk, subscription_id,"
        " billing_reason, status, currency, period_start, period_end, subtotal, total,"
        " finalize_at, created)"
        " SELECT i, a, l, c, s, r, 'draft', cur, ps, pe, t, t, f, cr FROM unnest($1::text[],"
        " $2::text[], $3::bool[], $4::bigint[], $5::text[], $6::text[], $7::text[],"
        f" $8::bigint[], $9::bigint[], $10::{int_array(totals)}[], $11::bigint[], $12::bigint[])"
        " AS v(i, a, l, c, s, r, cur, ps, pe, t, f, cr)"
        " ON CONFLICT (subscription_id, period_start, billing_reason) DO NOTHING RETURNING id",
        [d.id for d in drafts],
        [d.account_id for d in drafts],
        [d.livemode for d in drafts],
        [d.customer_pk for d in drafts],
        [d.subscription_id for d in drafts],
        [d.billing_reason for d in drafts],
        [d.currency for d in drafts],
        [d.period_start for d in drafts],
        [d.period_end for d in drafts],
        totals,
        [d.finalize_at for d in drafts],
        [d.created for d in drafts],
    )
    inserted = {r["id"] for r in rows}
    for d in drafts:
        if d.id not in inserted:
            log.error(
                "subscription %s period %d already has its %s invoice",
                d.subscription_id,
                d.period_start,
                d.billing_reason,
            )
    return [d for d in drafts if d.id in inserted]


async def _insert_lines(conn: asyncpg.Connection[Any], lines: list[tuple[str, int, Line]]) -> None:
    """(invoice id, position, line) rows in one ``COPY``: their invoices were just inserted
    in this transaction and the line ids are new, so nothing can conflict; ``COPY`` spares
    the thirteen arrays an ``INSERT … SELECT unnest(…)`` encodes and parses."""
    await conn.copy_records_to_table(
        "invoice_lines",
        columns=_LINE_COLUMNS,
        records=[
            (
                new_id("il"),
                invoice_id,
                position,
                ln.type,
                ln.item_pk,
                ln.price_id,
                ln.description,
                ln.quantity,
                ln.unit_amount_decimal,
                ln.amount,
                ln.period_start,
                ln.period_end,
                ln.proration,
            )
            for invoice_id, position, ln in lines
        ],
    )


_LINE_COLUMNS = (
    "id",
    "invoice_id",
    "position",
    "type",
    "item_pk",
    "price_id",
    "description",
    "quantity",
    "unit_amount_decimal",
    "amount",
    "period_start",
    "period_end",
    "proration",
)
