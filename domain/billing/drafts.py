"""Building blocks of the invoice transactions (``domain.billing.invoices``,
``domain.billing.dunning``):
draft invoices and their lines, written in bulk; prices parsed once per transaction;
subscription locks taken in one order."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from domain.events import Event, emit_events
from domain.pricing import PriceTerms, line_amount, parse_price_terms, unit_amount_decimal_str
from domain.views import load_invoices
from infra.ids import new_id
from infra.telemetry import M

__all__ = [
    "ITEMS",
    "Draft",
    "Line",
    "PriceBook",
    "int_array",
    "licensed_line",
    "lock_subscriptions",
    "price_metered",
    "write_drafts",
]

log = logging.getLogger(__name__)

_INT64 = 2**63 - 1


@dataclass(slots=True)
class Line:
    type: str  # "subscription" | "invoiceitem"
    item_pk: int | None
    price_id: str | None
    description: str
    quantity: int
    unit_amount_decimal: str | None
    amount: int
    period_start: int
    period_end: int
    proration: bool = False


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


def int_array(values: list[int]) -> str:
    """bigint[] travels much faster than numeric[]; numeric only for huge amounts."""
    return "bigint" if all(-_INT64 <= v <= _INT64 for v in values) else "numeric"


async def write_drafts(conn: asyncpg.Connection[Any], drafts: list[Draft]) -> list[Draft]:
    """Insert the drafts and their lines, take their pending invoice items, and queue
    ``invoice.created``; a draft whose period already has its invoice is left out."""
    if not drafts:
        return []
    totals = [sum(ln.amount for ln in d.lines) for d in drafts]
    kind = int_array(totals)
    rows = await conn.fetch(
        "INSERT INTO invoices (id, account_id, livemode, customer_pk, subscription_id,"
        " billing_reason, status, currency, period_start, period_end, subtotal, total,"
        " finalize_at, created)"
        " SELECT i, a, l, c, s, r, 'draft', cur, ps, pe, t, t, f, cr FROM unnest($1::text[],"
        " $2::text[], $3::bool[], $4::bigint[], $5::text[], $6::text[], $7::text[],"
        f" $8::bigint[], $9::bigint[], $10::{kind}[], $11::bigint[], $12::bigint[])"
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
    written = [d for d in drafts if d.id in inserted]
    lines = [(d.id, n, ln) for d in written for n, ln in enumerate(d.lines, 1)]
    if lines:
        quantities = [ln.quantity for _, _, ln in lines]
        amounts = [ln.amount for _, _, ln in lines]
        await conn.execute(
            "INSERT INTO invoice_lines (id, invoice_id, position, type, item_pk, price_id,"
            " description, quantity, unit_amount_decimal, amount, period_start, period_end,"
            " proration) SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::text[],"
            f" $5::bigint[], $6::text[], $7::text[], $8::{int_array(quantities)}[],"
            f" $9::text[], $10::{int_array(amounts)}[], $11::bigint[], $12::bigint[],"
            " $13::bool[])",
            [new_id("il") for _ in lines],
            [i for i, _, _ in lines],
            [n for _, n, _ in lines],
            [ln.type for _, _, ln in lines],
            [ln.item_pk for _, _, ln in lines],
            [ln.price_id for _, _, ln in lines],
            [ln.description for _, _, ln in lines],
            quantities,
            [ln.unit_amount_decimal for _, _, ln in lines],
            amounts,
            [ln.period_start for _, _, ln in lines],
            [ln.period_end for _, _, ln in lines],
            [ln.proration for _, _, ln in lines],
        )
    taken = [(d.id, item) for d in written for item in d.invoice_items]
    if taken:
        await conn.execute(
            "UPDATE invoice_items ii SET invoice_id = v.inv FROM unnest($1::text[], $2::text[])"
            " AS v(inv, id) WHERE ii.id = v.id",
            [t[0] for t in taken],
            [t[1] for t in taken],
        )
    rendered = await load_invoices(conn, [d.id for d in written])
    await emit_events(
        conn, [Event(d.account_id, d.livemode, "invoice.created", rendered[d.id]) for d in written]
    )
    M.invoices.labels("draft").inc(len(written))
    return written


class PriceBook:
    """Parsed price terms and display names, each price parsed once per transaction."""

    def __init__(self) -> None:
        self._terms: dict[str, PriceTerms] = {}
        self.rows: dict[str, asyncpg.Record] = {}

    async def load(self, conn: asyncpg.Connection[Any], price_ids: set[str]) -> None:
        missing = [p for p in price_ids if p not in self.rows]
        if missing:
            for r in await conn.fetch(
                "SELECT p.id, p.terms, p.usage_type, p.aggregate_usage, pr.name"
                " FROM prices p JOIN products pr ON pr.id = p.product_id"
                " WHERE p.id = ANY($1::text[])",
                missing,
            ):
                self.rows[r["id"]] = r

    def terms(self, price_id: str) -> PriceTerms:
        terms = self._terms.get(price_id)
        if terms is None:
            terms = self._terms[price_id] = parse_price_terms(self.rows[price_id]["terms"])
        return terms

    def line(self, price_id: str, quantity: int) -> tuple[int, str | None]:
        terms = self.terms(price_id)
        return line_amount(terms, quantity), unit_amount_decimal_str(terms)

    def name(self, price_id: str) -> str:
        return str(self.rows[price_id]["name"])


def licensed_line(prices: PriceBook, item: asyncpg.Record, lo: int, hi: int) -> Line:
    quantity = item["quantity"] or 0
    amount, unit = prices.line(item["price_id"], quantity)
    return Line(
        "subscription",
        item["pk"],
        item["price_id"],
        f"{quantity} × {prices.name(item['price_id'])} (in advance)",
        quantity,
        unit,
        amount,
        lo,
        hi,
    )


ITEMS = """
SELECT si.pk, si.subscription_id, si.quantity, si.price_id, p.usage_type
FROM subscription_items si JOIN prices p ON p.id = si.price_id
WHERE si.subscription_id = ANY($1::text[]) AND NOT si.deleted
ORDER BY si.subscription_id, si.pk
"""


def price_metered(prices: PriceBook, line: Line, price_id: str, quantity: int) -> None:
    line.quantity = quantity
    line.amount, line.unit_amount_decimal = prices.line(price_id, quantity)
    line.description = f"{quantity} × {prices.name(price_id)}"


async def lock_subscriptions(conn: asyncpg.Connection[Any], sub_ids: set[str]) -> None:
    """Lock in id order: finalizers and collectors touching the same subscriptions from
    different batches then wait for each other instead of deadlocking."""
    await conn.execute(
        "SELECT 1 FROM subscriptions WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        sorted(sub_ids),
    )
