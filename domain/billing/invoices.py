"""Invoice transactions, set-based: close periods, open a subscription's first invoice,
finalize drafts, collect payment.

Each function is one Postgres transaction over a batch of subscriptions or invoices, a fixed
number of statements however large the batch (SPEC §6: thousands of invoices per second).
Rows are claimed with ``FOR UPDATE SKIP LOCKED`` and re-checked under the lock, so several
invoicers can run: one wins each row, and the unique ``(subscription_id, period_start,
billing_reason)`` makes a second invoice for a period impossible even if locking were
bypassed. Events go to the outbox in the same transaction.

Here: closing periods and finalizing drafts; collecting payment and dunning live in
``domain.billing.dunning`` (re-exported), shared building blocks in ``domain.billing.drafts``.

Under a test clock every step is stamped with the simulated time at which it happens (the
period end, the end of the finalization grace, the scheduled retry), so a clock advanced
across several boundaries leaves the same trail as real time would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg

from domain.billing.drafts import (
    ITEMS,
    Draft,
    Line,
    PriceBook,
    int_array,
    licensed_line,
    lock_subscriptions,
    price_metered,
    write_drafts,
)
from domain.billing.rules import InvoiceRules
from domain.clock import now_s
from domain.events import Event, emit_events
from domain.metering import Ask, PriceChange, measure, price_segments
from domain.periods import period_at
from domain.pricing import unit_amount_decimal_str
from domain.views import load_invoices, load_subscriptions
from infra.ids import new_id
from infra.telemetry import M

__all__ = ["close_periods", "finalize_invoices", "mark_closing", "open_first_invoice"]

_BILLABLE = ("active", "past_due", "unpaid")


# ---------------------------------------------------------------- closing periods

_LOCK_DUE = """
SELECT s.*, c.frozen_time FROM subscriptions s LEFT JOIN test_clocks c ON c.id = s.test_clock_id
WHERE s.id = ANY($1::text[])
  AND (s.final_invoice_pending
       OR (s.status = ANY($3::text[]) AND s.current_period_end <= coalesce(c.frozen_time, $2)))
ORDER BY s.id FOR UPDATE OF s SKIP LOCKED
"""


async def close_periods(
    conn: asyncpg.Connection[Any], sub_ids: Sequence[str], rules: InvoiceRules
) -> list[tuple[str, str]]:
    """Invoice each subscription's ended period (or, canceled now, its usage so far) and
    start the next. Returns (invoice id, subscription id) of the drafts written; due
    subscriptions another invoicer holds, or no longer due, are skipped."""
    async with conn.transaction():
        subs = await conn.fetch(_LOCK_DUE, list(sub_ids), now_s(), list(_BILLABLE))
        if not subs:
            return []
        ids = [s["id"] for s in subs]
        subs_by_id = {s["id"]: s for s in subs}
        items = await conn.fetch(ITEMS, ids)
        by_sub: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for item in items:
            by_sub[item["subscription_id"]].append(item)
        metered = [i["pk"] for i in items if i["usage_type"] == "metered"]
        changes: dict[int, list[PriceChange]] = defaultdict(list)
        if metered:
            for r in await conn.fetch(
                "SELECT item_pk, changed_at, old_price_id, new_price_id"
                " FROM subscription_item_price_changes WHERE item_pk = ANY($1::bigint[])"
                " ORDER BY item_pk, changed_at, seq",
                metered,
            ):
                changes[r["item_pk"]].append(
                    PriceChange(r["changed_at"], r["old_price_id"], r["new_price_id"])
                )
        pending: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for r in await conn.fetch(
            "SELECT * FROM invoice_items WHERE subscription_id = ANY($1::text[])"
            " AND invoice_id IS NULL ORDER BY subscription_id, seq",
            ids,
        ):
            pending[r["subscription_id"]].append(r)
        prices = PriceBook()
        price_ids = {i["price_id"] for i in items}
        price_ids.update(c.old_price_id for cs in changes.values() for c in cs)
        price_ids.update(c.new_price_id for cs in changes.values() for c in cs)
        await prices.load(conn, price_ids)

        real_now = now_s()
        drafts: list[Draft] = []
        asks: list[tuple[Line, str, Ask]] = []
        # (id, kind: 0 final / 1 ends at period end / 2 continues, next index, start, end, ended)
        updates: list[tuple[str, int, int, int, int, int]] = []
        for sub in subs:
            sub_id = sub["id"]
            clocked = sub["test_clock_id"] is not None
            start = sub["current_period_start"]
            # Canceled now (or by dunning) after this period's end — the clock ran ahead of
            # the invoicer: bill this period as usual first, the final invoice comes later.
            catching_up = (
                sub["final_invoice_pending"] and sub["ended_at"] > sub["current_period_end"]
            )
            final = sub["final_invoice_pending"] and not catching_up
            end = max(sub["ended_at"], start) if final else sub["current_period_end"]
            ends_here = final or (sub["cancel_at_period_end"] and not catching_up)
            nxt = period_at(
                sub["anchor"], sub["interval"], sub["interval_count"], sub["period_index"] + 1
            )
            draft = Draft(
                new_id("inv"),
                sub["account_id"],
                sub["livemode"],
                sub["customer_pk"],
                sub_id,
                "subscription_cancel" if final else "subscription_cycle",
                sub["currency"],
                start,
                end,
                end + (0 if clocked else rules.finalization_grace_s),
                end if clocked else real_now,
            )
            for item in by_sub[sub_id]:
                if item["usage_type"] == "metered":
                    segments = price_segments(start, end, item["price_id"], changes[item["pk"]])
                    whole = len(segments) == 1
                    for seg in segments:
                        line = Line(
                            "subscription",
                            item["pk"],
                            seg.price_id,
                            "",
                            0,
                            unit_amount_decimal_str(prices.terms(seg.price_id)),
                            0,
                            seg.start,
                            seg.end,
                        )
                        draft.lines.append(line)
                        asks.append(
                            (
                                line,
                                seg.price_id,
                                Ask(
                                    item["pk"],
                                    start,
                                    seg.start,
                                    seg.end,
                                    prices.rows[seg.price_id]["aggregate_usage"],
                                    whole,
                                ),
                            )
                        )
                elif not ends_here:
                    draft.lines.append(licensed_line(prices, item, nxt.start, nxt.end))
            for ii in pending[sub_id]:
                draft.lines.append(
                    Line(
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
                )
                draft.invoice_items.append(ii["id"])
            drafts.append(draft)
            kind = 0 if final else (1 if ends_here else 2)
            updates.append((sub_id, kind, nxt.index, nxt.start, nxt.end, end))
        quantities = await measure(conn, [a for _, _, a in asks])
        for (line, price_id, _), quantity in zip(asks, quantities, strict=True):
            price_metered(prices, line, price_id, quantity)
        written = {d.subscription_id for d in await write_drafts(conn, drafts)}
        updates = [u for u in updates if u[0] in written]
        if updates:
            await conn.execute(
                "UPDATE subscriptions s SET"
                " final_invoice_pending = s.final_invoice_pending AND v.k <> 0,"
                " status = CASE WHEN v.k = 1 THEN 'canceled' ELSE s.status END,"
                " canceled_at = CASE WHEN v.k = 1 THEN coalesce(s.canceled_at, v.e)"
                "   ELSE s.canceled_at END,"
                " ended_at = CASE WHEN v.k = 1 THEN v.e ELSE s.ended_at END,"
                " period_index = CASE WHEN v.k = 2 THEN v.x ELSE s.period_index END,"
                " current_period_start = CASE WHEN v.k = 2 THEN v.ps"
                "   ELSE s.current_period_start END,"
                " current_period_end = CASE WHEN v.k = 2 THEN v.pe ELSE s.current_period_end END,"
                " version = s.version + 1"
                " FROM unnest($1::text[], $2::int[], $3::int[], $4::bigint[], $5::bigint[],"
                " $6::bigint[]) AS v(id, k, x, ps, pe, e) WHERE s.id = v.id",
                [u[0] for u in updates],
                [u[1] for u in updates],
                [u[2] for u in updates],
                [u[3] for u in updates],
                [u[4] for u in updates],
                [u[5] for u in updates],
            )
            rendered = await load_subscriptions(conn, [u[0] for u in updates])
            await emit_events(
                conn,
                [
                    Event(
                        r["account_id"],
                        r["livemode"],
                        "customer.subscription.deleted"
                        if kind == 1
                        else "customer.subscription.updated",
                        rendered[r["id"]],
                    )
                    for r, kind in ((subs_by_id[u[0]], u[1]) for u in updates)
                ],
            )
        return [(d.id, d.subscription_id) for d in drafts if d.subscription_id in written]


async def open_first_invoice(conn: asyncpg.Connection[Any], sub_id: str) -> str | None:
    """The invoice a new subscription's licensed items are billed on, for its first period,
    in advance (``billing_reason: subscription_create``), due for finalization at once.
    Call in the creating transaction; None when the subscription has no licensed item."""
    sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE id = $1", sub_id)
    if sub is None:
        return None
    licensed = [i for i in await conn.fetch(ITEMS, [sub_id]) if i["usage_type"] == "licensed"]
    if not licensed:
        return None
    prices = PriceBook()
    await prices.load(conn, {i["price_id"] for i in licensed})
    start, end = sub["current_period_start"], sub["current_period_end"]
    draft = Draft(
        new_id("inv"),
        sub["account_id"],
        sub["livemode"],
        sub["customer_pk"],
        sub_id,
        "subscription_create",
        sub["currency"],
        start,
        end,
        sub["created"],
        sub["created"],
        [licensed_line(prices, i, start, end) for i in licensed],
    )
    written = await write_drafts(conn, [draft])
    return written[0].id if written else None


# ---------------------------------------------------------------- finalizing

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
        subs = sorted({r["subscription_id"] for r in rows if r["subscription_id"]})
        await conn.execute(
            "UPDATE subscriptions SET version = version + 1 WHERE id = ANY($1::text[])", subs
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
    later than that are finalized. Returns (invoice id, subscription id) of those finalized."""
    async with conn.transaction():
        real_now = now_s()
        due = [
            r
            for r in await conn.fetch(_LOCK_INVOICES, list(invoice_ids), "draft")
            if r["finalize_at"] <= (real_now if r["frozen_time"] is None else r["frozen_time"])
            and (
                settled_before is None
                or (r["closing_at"] is not None and r["closing_at"] <= settled_before)
            )
        ]
        if not due:
            return []
        await lock_subscriptions(conn, {r["subscription_id"] for r in due})
        by_id = {r["id"]: r for r in due}
        ids = list(by_id)
        lines = await conn.fetch(
            "SELECT l.id, l.invoice_id, l.item_pk, l.price_id, l.period_start, l.period_end,"
            " l.quantity, l.amount FROM invoice_lines l JOIN prices p ON p.id = l.price_id"
            " WHERE l.invoice_id = ANY($1::text[]) AND l.type = 'subscription'"
            " AND p.usage_type = 'metered' ORDER BY l.invoice_id, l.position",
            ids,
        )
        if lines:
            await _close_windows(conn, by_id, lines, real_now)
        totals = {r["id"]: int(r["total"]) for r in due}
        totals.update(await _reprice(conn, by_id, lines))
        for invoice_id in [i for i, t in totals.items() if t < 0]:
            await _carry_credit(conn, by_id[invoice_id], totals[invoice_id])
            totals[invoice_id] = 0
        at = {
            i: r["finalize_at"] if r["frozen_time"] is not None else real_now
            for i, r in by_id.items()
        }
        await conn.execute(
            "UPDATE invoices i SET status = CASE WHEN i.total = 0 THEN 'paid' ELSE 'open' END,"
            " finalized_at = v.at, paid_at = CASE WHEN i.total = 0 THEN v.at END,"
            " next_payment_attempt = CASE WHEN i.total = 0 THEN NULL ELSE v.at END"
            " FROM unnest($1::text[], $2::bigint[]) AS v(id, at) WHERE i.id = v.id",
            ids,
            [at[i] for i in ids],
        )
        await conn.execute(
            "UPDATE subscriptions SET version = version + 1 WHERE id = ANY($1::text[])",
            list({r["subscription_id"] for r in due}),
        )
        rendered = await load_invoices(conn, ids)
        events = [
            Event(r["account_id"], r["livemode"], "invoice.finalized", rendered[r["id"]])
            for r in due
        ]
        events += [
            Event(r["account_id"], r["livemode"], "invoice.paid", rendered[r["id"]])
            for r in due
            if totals[r["id"]] == 0
        ]
        await emit_events(conn, events)
    paid = sum(1 for t in totals.values() if t == 0)
    M.invoices.labels("paid").inc(paid)
    M.invoices.labels("open").inc(len(due) - paid)
    return [(r["id"], r["subscription_id"]) for r in due]


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
            Ask(
                ln["item_pk"],
                inv["period_start"],
                ln["period_start"],
                ln["period_end"],
                prices.rows[ln["price_id"]]["aggregate_usage"],
                whole,
            )
        )
    changed: list[tuple[str, Line]] = []
    for ln, quantity in zip(lines, await measure(conn, asks), strict=True):
        line = Line(
            "subscription",
            ln["item_pk"],
            ln["price_id"],
            "",
            0,
            None,
            0,
            ln["period_start"],
            ln["period_end"],
        )
        price_metered(prices, line, ln["price_id"], quantity)
        if (line.quantity, line.amount) != (int(ln["quantity"]), int(ln["amount"])):
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
