"""Collecting payment: one charge per attempt on the sandbox card network, and dunning.

``collect_invoices`` is one transaction over a batch of open invoices (see
``domain.billing.invoices`` for the locking rules every step follows).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg

from domain.billing.drafts import int_array, lock_subscriptions
from domain.billing.rules import InvoiceRules
from domain.clock import now_s
from domain.events import Event, emit_events
from domain.payments import charge_outcome
from domain.views import load_invoices, load_subscriptions
from infra.ids import new_id
from infra.telemetry import M

__all__ = ["Attempt", "collect_invoices"]

_DAY = 86_400

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


class Attempt(NamedTuple):
    invoice_id: str
    subscription_id: str | None
    outcome: str  # "paid" | "failed"
    subscription_changed: bool  # its status changed (past_due, active, …)


# How bad a subscription's standing after failures is; the worst of a batch wins.
_STANDING = {"past_due": 1, "unpaid": 2, "canceled": 3}


async def collect_invoices(
    conn: asyncpg.Connection[Any],
    invoice_ids: Sequence[str],
    rules: InvoiceRules,
    *,
    manual: bool = False,
) -> list[Attempt]:
    """Charge the customer's default payment method once per invoice (one charge per
    attempt: ``(invoice_id, attempt)`` is unique). Returns the attempts made; invoices not
    open, not due or held elsewhere are left out.

    Automatic attempts follow ``rules.retry_days``, counted from the previous scheduled
    attempt (3, 5, 7, 6: retries 3, 8, 15 and 21 days after the first failure): each
    failure queues ``invoice.payment_failed`` and makes the subscription ``past_due``;
    after the last retry it becomes ``rules.final_action`` (``unpaid``, or ``canceled``
    with a final invoice for its usage so far). A ``manual`` attempt (``POST
    /v1/invoices/{id}/pay``) runs now, whatever the schedule, and leaves the schedule as is.
    A success pays the invoice and makes a ``past_due``/``unpaid`` subscription ``active``
    again once none of its invoices is failing.
    """
    async with conn.transaction():
        real_now = now_s()
        rows = await conn.fetch(_LOCK_OPEN, list(invoice_ids))
        attempts: list[tuple[asyncpg.Record, int]] = []  # (invoice, attempt time)
        for r in rows:
            clock_now = real_now if r["frozen_time"] is None else r["frozen_time"]
            scheduled = r["next_payment_attempt"]
            if manual:
                attempts.append((r, clock_now))
            elif scheduled is not None and scheduled <= clock_now:
                attempts.append((r, clock_now if r["frozen_time"] is None else scheduled))
        if not attempts:
            return []
        await lock_subscriptions(
            conn, {r["subscription_id"] for r, _ in attempts if r["subscription_id"] is not None}
        )
        outcomes = [charge_outcome(r["kind"]) for r, _ in attempts]
        amounts = [int(r["total"]) for r, _ in attempts]
        charged = {
            r["invoice_id"]
            for r in await conn.fetch(
                "INSERT INTO charges (id, account_id, livemode, invoice_id, attempt, amount,"
                " currency, payment_method, status, failure_code, failure_message, created)"
                " SELECT * FROM unnest($1::text[], $2::text[], $3::bool[], $4::text[], $5::int[],"
                f" $6::{int_array(amounts)}[], $7::text[], $8::text[], $9::text[], $10::text[],"
                " $11::text[], $12::bigint[])"
                " ON CONFLICT (invoice_id, attempt) DO NOTHING RETURNING invoice_id",
                [new_id("ch") for _ in attempts],
                [r["account_id"] for r, _ in attempts],
                [r["livemode"] for r, _ in attempts],
                [r["id"] for r, _ in attempts],
                [r["attempt_count"] + 1 for r, _ in attempts],
                amounts,
                [r["currency"] for r, _ in attempts],
                [r["default_pm"] or "none" for r, _ in attempts],
                ["succeeded" if o.succeeded else "failed" for o in outcomes],
                [o.failure_code for o in outcomes],
                [o.failure_message for o in outcomes],
                [at for _, at in attempts],
            )
        }
        paid: list[tuple[asyncpg.Record, int]] = []
        failed: list[tuple[asyncpg.Record, int, int, int | None]] = []  # inv, at, auto, next
        standing: dict[str, tuple[str, int, int]] = {}  # sub → (status, at, period start)
        for (r, at), outcome in zip(attempts, outcomes, strict=True):
            if r["id"] not in charged:
                continue
            if outcome.succeeded:
                paid.append((r, at))
                continue
            auto, next_at = r["auto_attempt_count"], r["next_payment_attempt"]
            status: str | None = None
            if not manual:
                if auto < len(rules.retry_days):
                    next_at, status = next_at + rules.retry_days[auto] * _DAY, "past_due"
                else:
                    next_at, status = None, rules.final_action
                auto += 1
            failed.append((r, at, auto, next_at))
            sub_id = r["subscription_id"]
            if (
                status is not None
                and sub_id is not None
                and (sub_id not in standing or _STANDING[status] > _STANDING[standing[sub_id][0]])
            ):
                standing[sub_id] = (status, at, r["current_period_start"])
        changed_subs = await _apply_outcomes(conn, paid, failed, standing)
        rendered = await load_invoices(
            conn, [r["id"] for r, _ in paid] + [f[0]["id"] for f in failed]
        )
        events = []
        for r, _ in paid:
            for kind in ("invoice.paid", "invoice.payment_succeeded"):
                events.append(Event(r["account_id"], r["livemode"], kind, rendered[r["id"]]))
        events += [
            Event(
                f[0]["account_id"], f[0]["livemode"], "invoice.payment_failed", rendered[f[0]["id"]]
            )
            for f in failed
        ]
        subs = await load_subscriptions(conn, sorted(changed_subs))
        events += [
            Event(
                s_row["account_id"],
                s_row["livemode"],
                "customer.subscription.deleted"
                if s_row["status"] == "canceled"
                else "customer.subscription.updated",
                rendered_sub,
            )
            for s_row, rendered_sub in (
                (changed_subs[sid], subs[sid]) for sid in sorted(changed_subs)
            )
        ]
        await emit_events(conn, events)
    M.charges.labels("succeeded").inc(len(paid))
    M.charges.labels("failed").inc(len(failed))
    M.invoices.labels("paid").inc(len(paid))
    return [
        Attempt(r["id"], r["subscription_id"], "paid", r["subscription_id"] in changed_subs)
        for r, _ in paid
    ] + [
        Attempt(
            f[0]["id"], f[0]["subscription_id"], "failed", f[0]["subscription_id"] in changed_subs
        )
        for f in failed
    ]


async def _apply_outcomes(
    conn: asyncpg.Connection[Any],
    paid: list[tuple[asyncpg.Record, int]],
    failed: list[tuple[asyncpg.Record, int, int, int | None]],
    standing: dict[str, tuple[str, int, int]],
) -> dict[str, asyncpg.Record]:
    """Write the attempts' results; the subscriptions whose status changed (id → row)."""
    changed: dict[str, asyncpg.Record] = {}
    if failed:
        await conn.execute(
            "UPDATE invoices i SET attempt_count = i.attempt_count + 1,"
            " auto_attempt_count = v.auto, next_payment_attempt = v.nxt"
            " FROM unnest($1::text[], $2::int[], $3::bigint[]) AS v(id, auto, nxt)"
            " WHERE i.id = v.id",
            [f[0]["id"] for f in failed],
            [f[2] for f in failed],
            [f[3] for f in failed],
        )
    if standing:
        subs = sorted(standing)
        for row in await conn.fetch(
            "UPDATE subscriptions s SET status = v.st, version = s.version + 1,"
            " canceled_at = CASE WHEN v.st = 'canceled' THEN v.at ELSE s.canceled_at END,"
            " ended_at = CASE WHEN v.st = 'canceled' THEN greatest(v.at, v.ps)"
            "   ELSE s.ended_at END,"
            " final_invoice_pending = s.final_invoice_pending OR v.st = 'canceled'"
            " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])"
            " AS v(id, st, at, ps)"
            " WHERE s.id = v.id AND s.status <> 'canceled' AND s.status <> v.st"
            " RETURNING s.id, s.account_id, s.livemode, s.status",
            subs,
            [standing[s][0] for s in subs],
            [standing[s][1] for s in subs],
            [standing[s][2] for s in subs],
        ):
            changed[row["id"]] = row
    if paid:
        await conn.execute(
            "UPDATE invoices i SET status = 'paid', amount_paid = i.total, paid_at = v.at,"
            " attempt_count = i.attempt_count + 1, next_payment_attempt = NULL"
            " FROM unnest($1::text[], $2::bigint[]) AS v(id, at) WHERE i.id = v.id",
            [r["id"] for r, _ in paid],
            [at for _, at in paid],
        )
        for row in await conn.fetch(
            "UPDATE subscriptions s SET status = 'active', version = s.version + 1"
            " WHERE s.id = ANY($1::text[]) AND s.status IN ('past_due', 'unpaid')"
            " AND NOT EXISTS (SELECT 1 FROM invoices o WHERE o.subscription_id = s.id"
            " AND o.status = 'open' AND o.attempt_count > 0)"
            " RETURNING s.id, s.account_id, s.livemode, s.status",
            list({r["subscription_id"] for r, _ in paid if r["subscription_id"]}),
        ):
            changed[row["id"]] = row
    return changed
