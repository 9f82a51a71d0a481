"""Period invoices: a new subscription's first, billed in advance, each ended period's, and
the upcoming one.

Closing a batch of periods is load (the subscriptions due, locked, with their items, price
changes, pending invoice items and prices), plan (``domain.billing.plan``, per subscription,
no I/O), build (``_build``: the drafts' lines, metered ones measured and priced), write
(drafts, the subscriptions' next state, events). Under a test clock every step is stamped
with the simulated time at which it happens (the period end, the end of the finalization
grace), so a clock advanced across several boundaries leaves the same trail as real time
would.

The upcoming invoice (``upcoming_invoice``) is the same load, plan and build for one
subscription, now, without locks and without writing: the invoice its current period would
produce if it ended with the usage recorded so far.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.billing.drafts import Draft, Line, insert_drafts, invoice_item_line, write_drafts
from domain.billing.plan import PeriodPlan, SubscriptionPeriod, plan_period
from domain.billing.pricebook import PriceBook
from domain.billing.rules import InvoiceRules
from domain.clock import now_s, subscription_now
from domain.events import Event, emit_events
from domain.itemmeta import update_subscriptions
from domain.metering import Ask, PriceChange, measure, price_segments
from domain.objects import render_invoice, render_prices
from domain.store.catalog import rendered_price_rows
from domain.store.owned import found
from domain.store.subscriptions import load_subscriptions
from domain.tenant import Tenant
from infra.errors import InvalidRequest
from infra.ids import new_id

__all__ = ["close_periods", "open_first_invoice", "upcoming_invoice"]

_BILLABLE = ("active", "past_due", "unpaid")

_LOCK_DUE = """
SELECT s.*, c.frozen_time FROM subscriptions s LEFT JOIN test_clocks c ON c.id = s.test_clock_id
WHERE s.id = ANY($1::text[])
  AND (s.final_invoice_pending
       OR (s.status = ANY($3::text[]) AND s.current_period_end <= coalesce(c.frozen_time, $2)))
ORDER BY s.id FOR UPDATE OF s SKIP LOCKED
"""

_UPCOMING = """
SELECT s.*, c.frozen_time, cu.id AS customer_id FROM subscriptions s
JOIN customers cu ON cu.pk = s.customer_pk
LEFT JOIN test_clocks c ON c.id = s.test_clock_id
WHERE s.id = $1 AND s.account_id = $2 AND s.livemode = $3
"""

_ITEMS = """
SELECT si.pk, si.id, si.subscription_id, si.quantity, si.price_id, p.usage_type
FROM subscription_items si JOIN prices p ON p.id = si.price_id
WHERE si.subscription_id = ANY($1::text[]) AND NOT si.deleted
ORDER BY si.subscription_id, si.pk
"""

_PRICE_CHANGES = """
SELECT item_pk, changed_at, old_price_id, new_price_id FROM subscription_item_price_changes
WHERE item_pk = ANY($1::bigint[]) ORDER BY item_pk, changed_at, seq
"""

_PENDING_ITEMS = """
SELECT * FROM invoice_items WHERE subscription_id = ANY($1::text[]) AND invoice_id IS NULL
ORDER BY subscription_id, seq
"""


@dataclass(slots=True)
class _Due:
    """A batch's locked subscriptions and everything their invoices are made of."""

    subs: list[asyncpg.Record]
    items: dict[str, list[asyncpg.Record]]
    changes: dict[int, list[PriceChange]]
    pending: dict[str, list[asyncpg.Record]]
    prices: PriceBook


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
        due = await _load(conn, subs)
        now = now_s()
        plans = [plan_period(_period_of(sub), rules, now) for sub in due.subs]
        drafts = await _build(conn, due, plans)
        return await _write(conn, due.subs, plans, drafts)


async def upcoming_invoice(
    conn: asyncpg.Connection[Any], t: Tenant, sub_id: str, rules: InvoiceRules
) -> dict[str, Any]:
    """The invoice the subscription's current period would produce now, rendered, built by
    the period close's own code (``_load``, ``plan_period``, ``_build``) and not stored: its
    metered lines measured over the current period so far, its licensed lines for the next
    period, the pending invoice items it would take. 404 for another account's, mode's or a
    missing subscription; 400 for a canceled one that owes no final invoice."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        sub = found(
            await conn.fetchrow(_UPCOMING, sub_id, t.account_id, t.livemode),
            what="subscription",
            ident=sub_id,
            param="subscription",
        )
        if sub["status"] == "canceled" and not sub["final_invoice_pending"]:
            raise InvalidRequest(
                f"subscription {sub_id} is canceled and its final invoice is written: there is"
                " no upcoming invoice",
                param="subscription",
                code="invoice_upcoming_none",
            )
        due = await _load(conn, [sub])
        plan = plan_period(_period_of(sub), rules, now_s())
        [draft] = await _build(conn, due, [plan])
        prices = await rendered_price_rows(conn, [ln.price_id for ln in draft.lines if ln.price_id])
        items = await conn.fetch(
            "SELECT pk, id FROM subscription_items WHERE pk = ANY($1::bigint[])",
            [ln.item_pk for ln in draft.lines if ln.item_pk is not None],
        )
    item_ids = {r["pk"]: r["id"] for r in items}
    total = sum(ln.amount for ln in draft.lines)
    row = {
        "id": None,
        "created": subscription_now(sub["frozen_time"]),
        "livemode": sub["livemode"],
        "customer_id": sub["customer_id"],
        "subscription_id": sub_id,
        "status": "draft",
        "currency": draft.currency,
        "billing_reason": draft.billing_reason,
        "period_start": draft.period_start,
        "period_end": draft.period_end,
        "subtotal": total,
        "total": total,
        "amount_paid": 0,
        "attempt_count": 0,
        "next_payment_attempt": None,
        "finalized_at": None,
        "paid_at": None,
    }
    lines = [
        {
            "id": None,
            "type": ln.type,
            "item_id": item_ids.get(ln.item_pk) if ln.item_pk is not None else None,
            "price_id": ln.price_id,
            "quantity": ln.quantity,
            "amount": ln.amount,
            "unit_amount_decimal": ln.unit_amount_decimal,
            "description": ln.description,
            "period_start": ln.period_start,
            "period_end": ln.period_end,
            "proration": ln.proration,
        }
        for ln in draft.lines
    ]
    return render_invoice(row, lines, render_prices(prices))


async def _build(conn: asyncpg.Connection[Any], due: _Due, plans: list[PeriodPlan]) -> list[Draft]:
    """The drafts ``plans`` call for, every metered line measured (in one ``measure`` for
    the batch) and priced."""
    drafts: list[Draft] = []
    metered: list[tuple[Line, Ask]] = []
    for sub, plan in zip(due.subs, plans, strict=True):
        drafts.append(_draft(due, sub, plan, metered))
    quantities = await measure(conn, [ask for _, ask in metered])
    for (line, _), quantity in zip(metered, quantities, strict=True):
        due.prices.price(line, quantity)
    return drafts


async def _load(conn: asyncpg.Connection[Any], subs: Sequence[asyncpg.Record]) -> _Due:
    """Read what the subscriptions' invoices need (four queries)."""
    due = _Due(list(subs), defaultdict(list), defaultdict(list), defaultdict(list), PriceBook())
    ids = [s["id"] for s in subs]
    items = await conn.fetch(_ITEMS, ids)
    for item in items:
        due.items[item["subscription_id"]].append(item)
    metered = [i["pk"] for i in items if i["usage_type"] == "metered"]
    if metered:
        for r in await conn.fetch(_PRICE_CHANGES, metered):
            due.changes[r["item_pk"]].append(
                PriceChange(r["changed_at"], r["old_price_id"], r["new_price_id"])
            )
    for r in await conn.fetch(_PENDING_ITEMS, ids):
        due.pending[r["subscription_id"]].append(r)
    price_ids = {i["price_id"] for i in items}
    for changes in due.changes.values():
        price_ids.update(p for c in changes for p in (c.old_price_id, c.new_price_id))
    await due.prices.load(conn, price_ids)
    return due


def _period_of(sub: asyncpg.Record) -> SubscriptionPeriod:
    return SubscriptionPeriod(
        sub["status"],
        sub["anchor"],
        sub["interval"],
        sub["interval_count"],
        sub["period_index"],
        sub["current_period_start"],
        sub["current_period_end"],
        sub["cancel_at_period_end"],
        sub["final_invoice_pending"],
        sub["canceled_at"],
        sub["ended_at"],
        sub["test_clock_id"] is not None,
    )


def _draft(
    due: _Due, sub: asyncpg.Record, plan: PeriodPlan, metered: list[tuple[Line, Ask]]
) -> Draft:
    """The draft ``plan`` calls for; its metered lines, still to measure, go to ``metered``."""
    draft = _new_draft(
        sub, plan.billing_reason, plan.start, plan.end, plan.finalize_at, plan.created
    )
    for item in due.items[sub["id"]]:
        if item["usage_type"] == "metered":
            segments = price_segments(
                plan.start, plan.end, item["price_id"], due.changes[item["pk"]]
            )
            for seg in segments:
                line = due.prices.metered(item["pk"], seg.price_id, seg.start, seg.end)
                ask = due.prices.ask(
                    item["pk"],
                    plan.start,
                    seg.start,
                    seg.end,
                    seg.price_id,
                    customer_pk=sub["customer_pk"],
                    whole=len(segments) == 1,
                )
                draft.lines.append(line)
                metered.append((line, ask))
        elif plan.transition.advances:
            nxt = plan.next_period
            draft.lines.append(due.prices.licensed(item, nxt.start, nxt.end))
    for ii in due.pending[sub["id"]]:
        draft.lines.append(invoice_item_line(ii))
        draft.invoice_items.append(ii["id"])
    return draft


def _new_draft(
    sub: asyncpg.Record, reason: str, start: int, end: int, finalize_at: int, created: int
) -> Draft:
    return Draft(
        new_id("inv"),
        sub["account_id"],
        sub["livemode"],
        sub["customer_pk"],
        sub["id"],
        reason,
        sub["currency"],
        start,
        end,
        finalize_at,
        created,
    )


async def _write(
    conn: asyncpg.Connection[Any],
    subs: list[asyncpg.Record],
    plans: list[PeriodPlan],
    drafts: list[Draft],
) -> list[tuple[str, str]]:
    """Write the drafts, then move each subscription whose draft was written to its
    planned state; the drafts' and the subscriptions' events go to the outbox together."""
    inserted, events = await insert_drafts(conn, drafts)
    written = {d.subscription_id for d in inserted}
    done = [(s, p) for s, p in zip(subs, plans, strict=True) if s["id"] in written]
    if done:
        after = [p.after for _, p in done]
        await update_subscriptions(
            conn,
            "status = v.st, canceled_at = v.ca, ended_at = v.ea, final_invoice_pending = v.fp,"
            " period_index = v.x, current_period_start = v.ps, current_period_end = v.pe",
            "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bool[],"
            " $6::int[], $7::bigint[], $8::bigint[]) AS v(id, st, ca, ea, fp, x, ps, pe)"
            " WHERE s.id = v.id",
            [s["id"] for s, _ in done],
            [a.status for a in after],
            [a.canceled_at for a in after],
            [a.ended_at for a in after],
            [a.final_invoice_pending for a in after],
            [a.period_index for a in after],
            [a.current_period_start for a in after],
            [a.current_period_end for a in after],
        )
        rendered = await load_subscriptions(conn, [s["id"] for s, _ in done])
        events += [
            Event(s["account_id"], s["livemode"], p.transition.event_type, rendered[s["id"]])
            for s, p in done
        ]
    await emit_events(conn, events)
    return [(d.id, d.subscription_id) for d in drafts if d.subscription_id in written]


async def open_first_invoice(conn: asyncpg.Connection[Any], sub_id: str) -> str | None:
    """The invoice a new subscription's licensed items are billed on, for its first period,
    in advance (``billing_reason: subscription_create``), due for finalization at once.
    Call in the creating transaction; None when the subscription has no licensed item."""
    sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE id = $1", sub_id)
    if sub is None:
        return None
    licensed = [i for i in await conn.fetch(_ITEMS, [sub_id]) if i["usage_type"] == "licensed"]
    if not licensed:
        return None
    prices = PriceBook()
    await prices.load(conn, {i["price_id"] for i in licensed})
    start, end = sub["current_period_start"], sub["current_period_end"]
    draft = _new_draft(sub, "subscription_create", start, end, sub["created"], sub["created"])
    draft.lines = [prices.licensed(i, start, end) for i in licensed]
    written = await write_drafts(conn, [draft])
    return written[0].id if written else None
