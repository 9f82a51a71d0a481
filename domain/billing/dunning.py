"""Collecting payment: one charge per attempt on the sandbox card network, and dunning.

``collect_invoices`` is one transaction over a batch of open invoices (see
``domain.billing.batch`` for the rules every step follows): claim the invoices due, charge
each once, decide what each attempt leads to (``domain.billing.retries``, no I/O), write
the invoices' and subscriptions' new state, and queue the events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import asyncpg

from domain.billing.batch import int_array, lock_subscriptions
from domain.billing.retries import AttemptPlan, Standing, attempt_time, plan_attempt, worst
from domain.billing.rules import InvoiceRules
from domain.clock import now_s
from domain.events import Event, emit_events
from domain.itemmeta import update_subscriptions
from domain.payments import ChargeOutcome, charge_outcome
from domain.store.invoices import load_invoices
from domain.store.subscriptions import load_subscriptions
from infra.ids import new_id
from infra.telemetry import M

__all__ = ["Attempt", "collect_invoices"]

_LOCK_OPEN = """
SELECT i.id, i.account_id, i.livemode, i.subscription_id, i.total, i.currency,
       i.attempt_count, i.auto_attempt_count, i.next_payment_attempt, c.default_pm, pm.kind,
       tc.frozen_time, s.current_period_start
FROM invoices i JOIN customers c ON c.pk = i.customer_pk
LEFT JOIN payment_methods pm ON pm.id = c.default_pm
LEFT JOIN subscriptions s ON s.id = i.subscription_id
LEFT JOIN test_clocks tc ON tc.id = s.test_clock_id
WHERE i.id = ANY($1::text[]) AND i.status = 'open'
ORDER BY i.id FOR UPDATE OF i SKIP LOCKED
"""

_SUB_RETURNING = "s.id, s.account_id, s.livemode, s.status"


class Attempt(NamedTuple):
    invoice_id: str
    subscription_id: str | None
    outcome: str  # "paid" | "failed"
    subscription_changed: bool  # its status changed (past_due, active, …)


@dataclass(frozen=True, slots=True)
class _Made:
    """An attempt charged: the invoice as claimed, when, and what it leads to."""

    invoice: asyncpg.Record
    at: int
    plan: AttemptPlan


async def collect_invoices(
    conn: asyncpg.Connection[Any],
    invoice_ids: Sequence[str],
    rules: InvoiceRules,
    *,
    manual: bool = False,
) -> list[Attempt]:
    """Charge the customer's default payment method once per invoice (one charge per
    attempt: ``(invoice_id, attempt)`` is unique). Returns the attempts made, the paid
    first; invoices not open, not due or held elsewhere are left out.

    Each failure queues ``invoice.payment_failed`` and may change the subscription's status
    (``domain.billing.retries``; a final ``canceled`` also owes a final invoice for its usage
    so far). A ``manual`` attempt (``POST /v1/invoices/{id}/pay``) runs now, whatever the
    schedule. A success pays the invoice and makes a ``past_due``/``unpaid`` subscription
    ``active`` again once none of its invoices is failing.
    """
    async with conn.transaction():
        due = await _claim_due(conn, invoice_ids, manual=manual)
        if not due:
            return []
        await lock_subscriptions(
            conn, {r["subscription_id"] for r, _ in due if r["subscription_id"] is not None}
        )
        outcomes = [charge_outcome(r["kind"]) for r, _ in due]
        charged = await _charge(conn, due, outcomes)
        made = [
            _Made(r, at, plan_attempt(o.succeeded, *_counters(r), rules, manual=manual))
            for (r, at), o in zip(due, outcomes, strict=True)
            if r["id"] in charged
        ]
        made.sort(key=lambda m: not m.plan.paid)  # stable: the paid first, as claimed
        changed = await _write(conn, made)
        await _announce(conn, made, changed)
    paid = sum(1 for m in made if m.plan.paid)
    M.charges.labels("succeeded").inc(paid)
    M.charges.labels("failed").inc(len(made) - paid)
    M.invoices.labels("paid").inc(paid)
    return [
        Attempt(
            m.invoice["id"],
            m.invoice["subscription_id"],
            "paid" if m.plan.paid else "failed",
            m.invoice["subscription_id"] in changed,
        )
        for m in made
    ]


def _counters(invoice: asyncpg.Record) -> tuple[int, int | None]:
    return invoice["auto_attempt_count"], invoice["next_payment_attempt"]


async def _claim_due(
    conn: asyncpg.Connection[Any], invoice_ids: Sequence[str], *, manual: bool
) -> list[tuple[asyncpg.Record, int]]:
    """Lock the open invoices whose attempt is due; each with its attempt's time."""
    now = now_s()
    due = []
    for r in await conn.fetch(_LOCK_OPEN, list(invoice_ids)):
        at = attempt_time(r["next_payment_attempt"], r["frozen_time"], now, manual=manual)
        if at is not None:
            due.append((r, at))
    return due


async def _charge(
    conn: asyncpg.Connection[Any],
    due: list[tuple[asyncpg.Record, int]],
    outcomes: list[ChargeOutcome],
) -> set[str]:
    """Record one charge per attempt; the invoices charged (an attempt recorded by someone
    else already is not charged twice)."""
    amounts = [int(r["total"]) for r, _ in due]
    rows = await conn.fetch(
        "INSERT INTO charges (id, account_id, livemode, invoice_id, attempt, amount,"
        " currency, payment_method, status, failure_code, failure_message, created)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::int[],"
        f" $6::{int_array(amounts)}[], $7::text[], $8::text[], $9::text[], $10::text[],"
        " $11::text[], $12::bigint[])"
        " ON CONFLICT (invoice_id, attempt) DO NOTHING RETURNING invoice_id",
        [new_id("ch") for _ in due],
        [r["account_id"] for r, _ in due],
        [r["livemode"] for r, _ in due],
        [r["id"] for r, _ in due],
        [r["attempt_count"] + 1 for r, _ in due],
        amounts,
        [r["currency"] for r, _ in due],
        [r["default_pm"] or "none" for r, _ in due],
        ["succeeded" if o.succeeded else "failed" for o in outcomes],
        [o.failure_code for o in outcomes],
        [o.failure_message for o in outcomes],
        [at for _, at in due],
    )
    return {r["invoice_id"] for r in rows}


def _standings(failed: list[_Made]) -> dict[str, Standing]:
    """Each subscription's standing after the batch's failures: the worst one."""
    standing: dict[str, Standing] = {}
    for m in failed:
        sub_id, status = m.invoice["subscription_id"], m.plan.standing
        if sub_id is not None and status is not None:
            new = Standing(status, m.at, m.invoice["current_period_start"])
            standing[sub_id] = worst(standing.get(sub_id), new)
    return standing


async def _write(conn: asyncpg.Connection[Any], made: list[_Made]) -> dict[str, asyncpg.Record]:
    """Write the attempts' results; the subscriptions whose status changed (id → row).
    Failures first: a subscription is active again only once none of its invoices fails."""
    failed = [m for m in made if not m.plan.paid]
    changed = await _write_failures(conn, failed) if failed else {}
    paid = [m for m in made if m.plan.paid]
    if paid:
        changed.update(await _write_payments(conn, paid))
    return changed


async def _write_failures(
    conn: asyncpg.Connection[Any], failed: list[_Made]
) -> dict[str, asyncpg.Record]:
    await conn.execute(
        "UPDATE invoices i SET attempt_count = i.attempt_count + 1,"
        " auto_attempt_count = v.auto, next_payment_attempt = v.nxt"
        " FROM unnest($1::text[], $2::int[], $3::bigint[]) AS v(id, auto, nxt)"
        " WHERE i.id = v.id",
        [m.invoice["id"] for m in failed],
        [m.plan.auto_attempt_count for m in failed],
        [m.plan.next_payment_attempt for m in failed],
    )
    standing = _standings(failed)
    if not standing:
        return {}
    subs = sorted(standing)
    rows = await update_subscriptions(
        conn,
        "status = v.st,"
        " canceled_at = CASE WHEN v.st = 'canceled' THEN v.at ELSE s.canceled_at END,"
        " ended_at = CASE WHEN v.st = 'canceled' THEN greatest(v.at, v.ps) ELSE s.ended_at END,"
        " final_invoice_pending = s.final_invoice_pending OR v.st = 'canceled'",
        "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS v(id, st, at, ps)"
        " WHERE s.id = v.id AND s.status <> 'canceled' AND s.status <> v.st",
        subs,
        [standing[s].status for s in subs],
        [standing[s].at for s in subs],
        [standing[s].period_start for s in subs],
        returning=_SUB_RETURNING,
    )
    return {r["id"]: r for r in rows}


async def _write_payments(
    conn: asyncpg.Connection[Any], paid: list[_Made]
) -> dict[str, asyncpg.Record]:
    await conn.execute(
        "UPDATE invoices i SET status = 'paid', amount_paid = i.total, paid_at = v.at,"
        " attempt_count = i.attempt_count + 1, next_payment_attempt = NULL"
        " FROM unnest($1::text[], $2::bigint[]) AS v(id, at) WHERE i.id = v.id",
        [m.invoice["id"] for m in paid],
        [m.at for m in paid],
    )
    rows = await update_subscriptions(
        conn,
        "status = 'active'",
        "WHERE s.id = ANY($1::text[]) AND s.status IN ('past_due', 'unpaid')"
        " AND NOT EXISTS (SELECT 1 FROM invoices o WHERE o.subscription_id = s.id"
        " AND o.status = 'open' AND o.attempt_count > 0)",
        list({m.invoice["subscription_id"] for m in paid if m.invoice["subscription_id"]}),
        returning=_SUB_RETURNING,
    )
    return {r["id"]: r for r in rows}


async def _announce(
    conn: asyncpg.Connection[Any], made: list[_Made], changed: dict[str, asyncpg.Record]
) -> None:
    """Queue the invoices' events, then the changed subscriptions'."""
    rendered = await load_invoices(conn, [m.invoice["id"] for m in made])
    events = []
    for m in made:
        inv = m.invoice
        kinds = (
            ("invoice.paid", "invoice.payment_succeeded")
            if m.plan.paid
            else ("invoice.payment_failed",)
        )
        for kind in kinds:
            events.append(Event(inv["account_id"], inv["livemode"], kind, rendered[inv["id"]]))
    subs = await load_subscriptions(conn, sorted(changed))
    for sub_id in sorted(changed):
        row = changed[sub_id]
        kind = (
            "customer.subscription.deleted"
            if row["status"] == "canceled"
            else "customer.subscription.updated"
        )
        events.append(Event(row["account_id"], row["livemode"], kind, subs[sub_id]))
    await emit_events(conn, events)
