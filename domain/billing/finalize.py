"""Finalizing drafts, in two phases: ``mark_closing`` (from its commit on, once the item
metadata is written through, ingest no longer places usage in the drafts' periods), then,
after the settle time, ``finalize_invoices``: the periods' usage windows closed, the metered
lines measured again and repriced, a negative total carried to the next invoice as a credit,
and the invoice ``open`` (or ``paid`` at zero).

Lines billing a meter close the customer's meter instead of a window: marking closing moves
its ``closing_until`` to the period end (ingest refuses earlier events once its meter cache
drops, at the meter epoch bump), finalizing locks the boundary row, moves ``closed_until``
(the aggregator counts no earlier event from then on) and measures in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from domain.billing.batch import int_array, lock_subscriptions
from domain.billing.drafts import Line
from domain.billing.pricebook import PriceBook
from domain.clock import now_s
from domain.events import Event, emit_events
from domain.itemmeta import bump
from domain.metering import measure
from domain.meterusage import close_meters, mark_meters_closing
from domain.store.invoices import load_invoices
from infra.ids import new_id
from infra.telemetry import M

__all__ = ["finalize_invoices", "mark_closing"]

_LOCK_INVOICES = """
SELECT i.*, c.frozen_time FROM invoices i
LEFT JOIN subscriptions s ON s.id = i.subscription_id
LEFT JOIN test_clocks c ON c.id = s.test_clock_id
WHERE i.id = ANY($1::text[]) AND i.status = $2
ORDER BY i.id FOR UPDATE OF i SKIP LOCKED
"""


async def mark_closing(
    conn: asyncpg.Connection[Any], invoice_ids: Sequence[str]
) -> list[tuple[str, str]]:
    """Phase one of finalization: from this commit on (once the item metadata is written
    through), ingest no longer places usage in these drafts' periods. Returns (invoice id,
    subscription id) of the drafts newly marked."""
    async with conn.transaction():
        rows = await conn.fetch(
            "UPDATE invoices SET closing_at = extract(epoch from clock_timestamp())"
            " WHERE id = ANY($1::text[]) AND status = 'draft' AND closing_at IS NULL"
            " RETURNING id, subscription_id",
            list(invoice_ids),
        )
        await bump(conn, (r["subscription_id"] for r in rows if r["subscription_id"]))
        if rows:
            await mark_meters_closing(
                conn, await _meter_bounds(conn, [r["id"] for r in rows]), now_s()
            )
    return [(r["id"], r["subscription_id"]) for r in rows]


async def finalize_invoices(
    conn: asyncpg.Connection[Any],
    invoice_ids: Sequence[str],
    *,
    settled_before: float | None = None,
) -> list[tuple[str, str]]:
    """Draft → open for the drafts whose grace has passed: close their periods' usage windows
    (usage arriving later is dead-lettered), price the final quantities, and mark zero
    totals paid. With ``settled_before``, only drafts marked closing (``mark_closing``) no
    later than that are finalized. Returns (invoice id, subscription id) of those finalized.

    Only drafts not marked closing bump their subscription: the item metadata reads a
    closing draft as closing whatever its status (``domain.itemmeta``), so finalizing it
    changes nothing ingest caches. With ``settled_before`` none is bumped."""
    async with conn.transaction():
        now = now_s()
        due = await _claim_due(conn, invoice_ids, now, settled_before)
        if not due:
            return []
        await lock_subscriptions(conn, {r["subscription_id"] for r in due.values()})
        lines = await conn.fetch(_METERED_LINES, list(due))
        if any(ln["meter_pk"] is None for ln in lines):
            await _close_windows(conn, due, [ln for ln in lines if ln["meter_pk"] is None], now)
        if any(ln["meter_pk"] is not None for ln in lines):
            await close_meters(conn, await _meter_bounds(conn, list(due)), now)
        totals = {i: int(r["total"]) for i, r in due.items()}
        totals.update(await _reprice(conn, due, lines))
        for invoice_id in [i for i, t in totals.items() if t < 0]:
            await _carry_credit(conn, due[invoice_id], totals[invoice_id])
            totals[invoice_id] = 0
        await _open(conn, due, now)
        await bump(conn, (r["subscription_id"] for r in due.values() if r["closing_at"] is None))
        rendered = await load_invoices(conn, list(due))
        events = [
            Event(r["account_id"], r["livemode"], "invoice.finalized", rendered[r["id"]])
            for r in due.values()
        ]
        events += [
            Event(r["account_id"], r["livemode"], "invoice.paid", rendered[r["id"]])
            for r in due.values()
            if totals[r["id"]] == 0
        ]
        await emit_events(conn, events)
    paid = sum(1 for t in totals.values() if t == 0)
    M.invoices.labels("paid").inc(paid)
    M.invoices.labels("open").inc(len(due) - paid)
    return [(r["id"], r["subscription_id"]) for r in due.values()]


_METERED_LINES = """
SELECT l.id, l.invoice_id, l.item_pk, l.price_id, l.period_start, l.period_end, l.quantity,
       l.amount, p.meter_pk
FROM invoice_lines l JOIN prices p ON p.id = l.price_id
WHERE l.invoice_id = ANY($1::text[]) AND l.type = 'subscription' AND p.usage_type = 'metered'
ORDER BY l.invoice_id, l.position
"""

# (meter, customer, period end) of each meter the invoices bill.
_METER_BOUNDS = """
SELECT DISTINCT p.meter_pk, i.customer_pk, i.period_end
FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id JOIN prices p ON p.id = l.price_id
WHERE l.invoice_id = ANY($1::text[]) AND l.type = 'subscription' AND p.meter_pk IS NOT NULL
"""


async def _meter_bounds(
    conn: asyncpg.Connection[Any], invoice_ids: list[str]
) -> list[tuple[int, int, int]]:
    """Up to where each (meter, customer) the invoices bill is invoiced by them."""
    rows = await conn.fetch(_METER_BOUNDS, invoice_ids)
    return [(r["meter_pk"], r["customer_pk"], r["period_end"]) for r in rows]


async def _claim_due(
    conn: asyncpg.Connection[Any],
    invoice_ids: Sequence[str],
    now: int,
    settled_before: float | None,
) -> dict[str, asyncpg.Record]:
    """Lock the drafts whose grace has passed (on their clock) and, with
    ``settled_before``, that were marked closing no later than that; by id."""
    return {
        r["id"]: r
        for r in await conn.fetch(_LOCK_INVOICES, list(invoice_ids), "draft")
        if r["finalize_at"] <= (now if r["frozen_time"] is None else r["frozen_time"])
        and (
            settled_before is None
            or (r["closing_at"] is not None and r["closing_at"] <= settled_before)
        )
    }


async def _open(conn: asyncpg.Connection[Any], due: dict[str, asyncpg.Record], now: int) -> None:
    """Draft → open, or paid at a zero total; under a test clock at the end of the grace."""
    ids = list(due)
    await conn.execute(
        "UPDATE invoices i SET status = CASE WHEN i.total = 0 THEN 'paid' ELSE 'open' END,"
        " finalized_at = v.at, paid_at = CASE WHEN i.total = 0 THEN v.at END,"
        " next_payment_attempt = CASE WHEN i.total = 0 THEN NULL ELSE v.at END"
        " FROM unnest($1::text[], $2::bigint[]) AS v(id, at) WHERE i.id = v.id",
        ids,
        [now if due[i]["frozen_time"] is None else due[i]["finalize_at"] for i in ids],
    )


async def _close_windows(
    conn: asyncpg.Connection[Any],
    invoices: dict[str, asyncpg.Record],
    lines: Sequence[asyncpg.Record],
    now: int,
) -> None:
    keys = sorted({(ln["item_pk"], ln["invoice_id"]) for ln in lines})
    await conn.execute(
        "INSERT INTO usage_windows (item_pk, period_start, period_end, invoice_id, updated)"
        " SELECT i, s, e, inv, $5 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[],"
        " $4::text[]) AS v(i, s, e, inv) ORDER BY i, s"
        " ON CONFLICT (item_pk, period_start) DO UPDATE SET invoice_id = EXCLUDED.invoice_id",
        [k[0] for k in keys],
        [invoices[k[1]]["period_start"] for k in keys],
        [invoices[k[1]]["period_end"] for k in keys],
        [k[1] for k in keys],
        now,
    )


async def _reprice(
    conn: asyncpg.Connection[Any],
    invoices: dict[str, asyncpg.Record],
    lines: Sequence[asyncpg.Record],
) -> dict[str, int]:
    """Measure the metered lines again (the windows are closed now); new totals of the
    invoices whose lines changed."""
    if not lines:
        return {}
    prices = PriceBook()
    await prices.load(conn, {ln["price_id"] for ln in lines})
    asks = []
    for ln in lines:
        inv = invoices[ln["invoice_id"]]
        whole = (ln["period_start"], ln["period_end"]) == (inv["period_start"], inv["period_end"])
        asks.append(
            prices.ask(
                ln["item_pk"],
                inv["period_start"],
                ln["period_start"],
                ln["period_end"],
                ln["price_id"],
                customer_pk=inv["customer_pk"],
                whole=whole,
            )
        )
    changed: list[tuple[str, Line]] = []
    for ln, quantity in zip(lines, await measure(conn, asks), strict=True):
        line = prices.metered(ln["item_pk"], ln["price_id"], ln["period_start"], ln["period_end"])
        prices.price(line, quantity)
        if (line.quantity, line.amount) != (ln["quantity"], int(ln["amount"])):
            changed.append((ln["id"], line))
    if not changed:
        return {}
    quantities = [ln.quantity for _, ln in changed]
    amounts = [ln.amount for _, ln in changed]
    await conn.execute(
        "UPDATE invoice_lines l SET quantity = v.q, amount = v.a, description = v.d"
        f" FROM unnest($1::text[], $2::{int_array(quantities)}[],"
        f" $3::{int_array(amounts)}[], $4::text[]) AS v(id, q, a, d) WHERE l.id = v.id",
        [i for i, _ in changed],
        quantities,
        amounts,
        [ln.description for _, ln in changed],
    )
    rows = await conn.fetch(
        "UPDATE invoices i SET subtotal = t.s, total = t.s FROM (SELECT invoice_id,"
        " sum(amount) AS s FROM invoice_lines WHERE invoice_id = ANY($1::text[])"
        " GROUP BY invoice_id) t WHERE i.id = t.invoice_id RETURNING i.id, i.total",
        list({ln["invoice_id"] for ln in lines}),
    )
    return {r["id"]: int(r["total"]) for r in rows}


async def _carry_credit(conn: asyncpg.Connection[Any], inv: asyncpg.Record, total: int) -> None:
    """A total below zero (credits from prorations exceeding the charges) is not paid out:
    the invoice closes at zero and the credit waits as an invoice item for the
    subscription's next invoice."""
    position = await conn.fetchval(
        "SELECT coalesce(max(position), 0) + 1 FROM invoice_lines WHERE invoice_id = $1", inv["id"]
    )
    await conn.execute(
        "INSERT INTO invoice_lines (id, invoice_id, position, type, description, quantity,"
        " amount, period_start, period_end) VALUES ($1, $2, $3, 'invoiceitem',"
        " 'Credit carried to the next invoice', 1, $4, $5, $6)",
        new_id("il"),
        inv["id"],
        position,
        -total,
        inv["period_start"],
        inv["period_end"],
    )
    await conn.execute(
        "INSERT INTO invoice_items (id, account_id, livemode, subscription_id, description,"
        " quantity, amount, period_start, period_end, created)"
        " VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9)",
        new_id("ii"),
        inv["account_id"],
        inv["livemode"],
        inv["subscription_id"],
        f"Credit carried over from {inv['id']}",
        total,
        inv["period_start"],
        inv["period_end"],
        inv["created"],
    )
    await conn.execute("UPDATE invoices SET subtotal = 0, total = 0 WHERE id = $1", inv["id"])
