"""Invoice transactions: close a period, finalize a draft, collect payment.

Each is one Postgres transaction that locks its subscription or invoice row with
``FOR UPDATE SKIP LOCKED`` — several invoicers can run; one wins each row, and the unique
``(subscription_id, period_start, billing_reason)`` makes a second invoice for a period
impossible even if locking were bypassed. Events go to the outbox in the same transaction.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from aggregator.fold import WindowState, billable_quantity
from invoicer.payments import charge_outcome
from invoicer.pricing import line_amount, parse_price_terms, unit_amount_decimal_str
from vinr.clock import now_s, subscription_now
from vinr.events import emit_event
from vinr.ids import new_id
from vinr.objects import render_invoice, render_subscription
from vinr.periods import period_at
from vinr.settings import Settings
from vinr.telemetry import M

__all__ = ["InvoiceRules", "close_period", "collect", "finalize", "load_invoice"]

log = logging.getLogger(__name__)

_DAY = 86_400


@dataclass(frozen=True, slots=True)
class InvoiceRules:
    """The billing policy knobs, from settings."""

    finalization_grace_s: int
    retry_days: tuple[int, ...]
    final_action: str

    @classmethod
    def from_settings(cls, s: Settings) -> InvoiceRules:
        return cls(s.finalization_grace_s, s.dunning_retry_days, s.dunning_final_action)


async def load_invoice(db: asyncpg.Pool | asyncpg.Connection[Any], invoice_id: str
                       ) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "SELECT i.*, c.id AS customer_id FROM invoices i JOIN customers c ON c.pk = i.customer_pk"
        " WHERE i.id = $1", invoice_id)
    if row is None:
        return None
    lines = await db.fetch(
        "SELECT l.*, si.id AS item_id FROM invoice_lines l"
        " LEFT JOIN subscription_items si ON si.pk = l.item_pk"
        " WHERE l.invoice_id = $1 ORDER BY l.position", invoice_id)
    price_ids = list({ln["price_id"] for ln in lines if ln["price_id"]})
    prices = {p["id"]: p for p in await db.fetch("SELECT * FROM prices WHERE id = ANY($1)",
                                                  price_ids)}
    return render_invoice(row, lines, prices)


async def _window(conn: asyncpg.Connection[Any], item_pk: int, period_start: int,
                  aggregate: str | None) -> int:
    row = await conn.fetchrow(
        "SELECT * FROM usage_windows WHERE item_pk = $1 AND period_start = $2",
        item_pk, period_start)
    state = None if row is None else WindowState(
        int(row["total"]), int(row["max"]), row["last_ts"], int(row["last_quantity"]),
        row["records"])
    carry = 0
    if aggregate == "last_ever":
        before = await conn.fetchval(
            "SELECT last_quantity FROM usage_windows WHERE item_pk = $1 AND period_start < $2"
            " AND last_ts IS NOT NULL ORDER BY period_start DESC LIMIT 1", item_pk, period_start)
        carry = 0 if before is None else int(before)
    return billable_quantity(aggregate, state, carry)


async def _items(conn: asyncpg.Connection[Any], sub_id: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT si.pk, si.id, si.quantity, p.id AS price_id, p.terms, p.usage_type,"
        " p.aggregate_usage, pr.name AS product_name FROM subscription_items si"
        " JOIN prices p ON p.id = si.price_id JOIN products pr ON pr.id = p.product_id"
        " WHERE si.subscription_id = $1 AND NOT si.deleted ORDER BY si.pk", sub_id)
    return rows


async def _metered_line(conn: asyncpg.Connection[Any], item: asyncpg.Record, start: int
                        ) -> tuple[int, int, str | None]:
    terms = parse_price_terms(item["terms"])
    quantity = await _window(conn, item["pk"], start, item["aggregate_usage"])
    return quantity, line_amount(terms, quantity), unit_amount_decimal_str(terms)


async def close_period(conn: asyncpg.Connection[Any], sub_id: str, rules: InvoiceRules
                       ) -> str | None:
    """Invoice the subscription's ended period and start the next; None if not due/taken."""
    async with conn.transaction():
        sub = await conn.fetchrow(
            "SELECT s.*, c.frozen_time FROM subscriptions s"
            " LEFT JOIN test_clocks c ON c.id = s.test_clock_id"
            " WHERE s.id = $1 FOR UPDATE OF s SKIP LOCKED", sub_id)
        if sub is None:
            return None
        now = subscription_now(sub["frozen_time"])
        final = sub["final_invoice_pending"]
        if not final and (sub["current_period_end"] > now
                          or sub["status"] not in ("active", "past_due", "unpaid")):
            return None
        start = sub["current_period_start"]
        end = sub["ended_at"] if final else sub["current_period_end"]
        ends_here = final or sub["cancel_at_period_end"]
        nxt = period_at(sub["anchor"], sub["interval"], sub["interval_count"],
                        sub["period_index"] + 1)
        grace = 0 if sub["test_clock_id"] else rules.finalization_grace_s
        reason = "subscription_cancel" if final else "subscription_cycle"
        invoice_id = await conn.fetchval(
            "INSERT INTO invoices (id, account_id, livemode, customer_pk, subscription_id,"
            " billing_reason, status, currency, period_start, period_end, finalize_at, created)"
            " VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $9, $10, $11)"
            " ON CONFLICT (subscription_id, period_start, billing_reason) DO NOTHING RETURNING id",
            new_id("inv"), sub["account_id"], sub["livemode"], sub["customer_pk"], sub_id,
            reason, sub["currency"], start, end, end + grace, now)
        if invoice_id is None:
            log.error("subscription %s period %d already invoiced", sub_id, start)
            return None
        position = 0
        for item in await _items(conn, sub_id):
            if item["usage_type"] == "metered":
                quantity, amount, unit = await _metered_line(conn, item, start)
                lo, hi, desc = start, end, f"{quantity} × {item['product_name']}"
            elif ends_here:
                continue
            else:
                terms = parse_price_terms(item["terms"])
                quantity = item["quantity"] or 0
                amount, unit = line_amount(terms, quantity), unit_amount_decimal_str(terms)
                lo, hi = nxt.start, nxt.end
                desc = f"{quantity} × {item['product_name']} (in advance)"
            position += 1
            await conn.execute(
                "INSERT INTO invoice_lines (id, invoice_id, position, type, item_pk, price_id,"
                " description, quantity, unit_amount_decimal, amount, period_start, period_end)"
                " VALUES ($1, $2, $3, 'subscription', $4, $5, $6, $7, $8, $9, $10, $11)",
                new_id("il"), invoice_id, position, item["pk"], item["price_id"], desc, quantity,
                unit, amount, lo, hi)
        await _retotal(conn, invoice_id)
        if final:
            await conn.execute("UPDATE subscriptions SET final_invoice_pending = false,"
                               " version = version + 1 WHERE id = $1", sub_id)
        elif ends_here:
            await conn.execute(
                "UPDATE subscriptions SET status = 'canceled', canceled_at = coalesce(canceled_at,"
                " $2), ended_at = $2, version = version + 1 WHERE id = $1", sub_id, end)
        else:
            await conn.execute(
                "UPDATE subscriptions SET period_index = $2, current_period_start = $3,"
                " current_period_end = $4, version = version + 1 WHERE id = $1",
                sub_id, nxt.index, nxt.start, nxt.end)
        invoice = await load_invoice(conn, invoice_id)
        if invoice is not None:
            await emit_event(conn, sub["account_id"], sub["livemode"], "invoice.created", invoice)
        await _subscription_event(conn, sub_id, "customer.subscription.deleted" if ends_here
                                  and not final else "customer.subscription.updated")
    M.invoices.labels("draft").inc()
    return str(invoice_id)


async def _subscription_event(conn: asyncpg.Connection[Any], sub_id: str, event_type: str
                              ) -> None:
    row = await conn.fetchrow(
        "SELECT s.*, c.id AS customer_id FROM subscriptions s JOIN customers c"
        " ON c.pk = s.customer_pk WHERE s.id = $1", sub_id)
    items = await conn.fetch(
        "SELECT si.*, p.id AS p_id, p.created AS p_created, p.livemode AS p_livemode,"
        " p.product_id AS p_product_id, p.currency AS p_currency, p.terms AS p_terms,"
        " p.active AS p_active, p.interval AS p_interval, p.interval_count AS p_interval_count,"
        " p.usage_type AS p_usage_type, p.aggregate_usage AS p_aggregate_usage"
        " FROM subscription_items si JOIN prices p ON p.id = si.price_id"
        " WHERE si.subscription_id = $1 AND NOT si.deleted ORDER BY si.pk", sub_id)
    await emit_event(conn, row["account_id"], row["livemode"], event_type,
                     render_subscription(row, items))


async def _retotal(conn: asyncpg.Connection[Any], invoice_id: str) -> None:
    await conn.execute(
        "UPDATE invoices SET subtotal = t.s, total = t.s FROM (SELECT coalesce(sum(amount), 0)"
        " AS s FROM invoice_lines WHERE invoice_id = $1) t WHERE id = $1", invoice_id)


async def _invoice_now(conn: asyncpg.Connection[Any], invoice_id: str) -> int:
    frozen = await conn.fetchval(
        "SELECT c.frozen_time FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id"
        " LEFT JOIN test_clocks c ON c.id = s.test_clock_id WHERE i.id = $1", invoice_id)
    return subscription_now(frozen)


async def finalize(conn: asyncpg.Connection[Any], invoice_id: str) -> bool:
    """Draft → open: close the period's windows (late usage is dead-lettered from now on),
    price the final quantities, and mark zero totals paid. False if not due or taken."""
    async with conn.transaction():
        inv = await conn.fetchrow(
            "SELECT * FROM invoices WHERE id = $1 AND status = 'draft' FOR UPDATE SKIP LOCKED",
            invoice_id)
        if inv is None:
            return False
        now = await _invoice_now(conn, invoice_id)
        if inv["finalize_at"] > now:
            return False
        lines = await conn.fetch(
            "SELECT l.id, l.item_pk, l.period_start, l.period_end, p.terms, p.aggregate_usage,"
            " pr.name AS product_name FROM invoice_lines l JOIN prices p ON p.id = l.price_id"
            " JOIN products pr ON pr.id = p.product_id"
            " WHERE l.invoice_id = $1 AND p.usage_type = 'metered' ORDER BY l.item_pk",
            invoice_id)
        if lines:
            await conn.execute(
                "INSERT INTO usage_windows (item_pk, period_start, period_end, invoice_id,"
                " updated) SELECT i, s, e, $4, $5 FROM unnest($1::bigint[], $2::bigint[],"
                " $3::bigint[]) AS v(i, s, e) ON CONFLICT (item_pk, period_start)"
                " DO UPDATE SET invoice_id = EXCLUDED.invoice_id",
                [ln["item_pk"] for ln in lines], [ln["period_start"] for ln in lines],
                [ln["period_end"] for ln in lines], invoice_id, now_s())
            for ln in lines:
                terms = parse_price_terms(ln["terms"])
                quantity = await _window(conn, ln["item_pk"], ln["period_start"],
                                         ln["aggregate_usage"])
                await conn.execute(
                    "UPDATE invoice_lines SET quantity = $2, amount = $3, description = $4"
                    " WHERE id = $1", ln["id"], quantity, line_amount(terms, quantity),
                    f"{quantity} × {ln['product_name']}")
            await _retotal(conn, invoice_id)
        total = await conn.fetchval(
            "UPDATE invoices SET status = 'open', finalized_at = $2, next_payment_attempt = $2"
            " WHERE id = $1 RETURNING total", invoice_id, now)
        await conn.execute("UPDATE subscriptions SET version = version + 1 WHERE id = $1",
                           inv["subscription_id"])
        if int(total) == 0:
            await conn.execute(
                "UPDATE invoices SET status = 'paid', paid_at = $2, next_payment_attempt = NULL"
                " WHERE id = $1", invoice_id, now)
        invoice = await load_invoice(conn, invoice_id)
        if invoice is not None:
            await emit_event(conn, inv["account_id"], inv["livemode"], "invoice.finalized",
                             invoice)
            if int(total) == 0:
                await emit_event(conn, inv["account_id"], inv["livemode"], "invoice.paid",
                                 invoice)
    M.invoices.labels("paid" if int(total) == 0 else "open").inc()
    return True


async def collect(conn: asyncpg.Connection[Any], invoice_id: str, rules: InvoiceRules, *,
                  manual: bool = False) -> str | None:
    """Charge the customer's default payment method once (one charge per attempt).

    Returns "paid", "failed", or None when the invoice is not open or not due. A failure
    schedules the next retry (``rules.retry_days``), marks the subscription ``past_due``,
    and after the last retry applies ``rules.final_action`` (``unpaid`` or ``canceled``).
    """
    async with conn.transaction():
        inv = await conn.fetchrow(
            "SELECT i.*, c.default_pm, pm.kind FROM invoices i"
            " JOIN customers c ON c.pk = i.customer_pk"
            " LEFT JOIN payment_methods pm ON pm.id = c.default_pm"
            " WHERE i.id = $1 AND i.status = 'open' FOR UPDATE OF i SKIP LOCKED", invoice_id)
        if inv is None:
            return None
        now = await _invoice_now(conn, invoice_id)
        if not manual and (inv["next_payment_attempt"] is None
                           or inv["next_payment_attempt"] > now):
            return None
        attempt = inv["attempt_count"] + 1
        outcome = charge_outcome(inv["kind"])
        charge_id = new_id("ch")
        inserted = await conn.fetchval(
            "INSERT INTO charges (id, account_id, livemode, invoice_id, attempt, amount, currency,"
            " payment_method, status, failure_code, failure_message, created)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            " ON CONFLICT (invoice_id, attempt) DO NOTHING RETURNING id",
            charge_id, inv["account_id"], inv["livemode"], invoice_id, attempt, inv["total"],
            inv["currency"], inv["default_pm"] or "none",
            "succeeded" if outcome.succeeded else "failed", outcome.failure_code,
            outcome.failure_message, now)
        if inserted is None:
            return None
        sub_id = inv["subscription_id"]
        acct, live = inv["account_id"], inv["livemode"]
        if outcome.succeeded:
            await conn.execute(
                "UPDATE invoices SET status = 'paid', amount_paid = total, paid_at = $2,"
                " attempt_count = $3, next_payment_attempt = NULL WHERE id = $1",
                invoice_id, now, attempt)
            await conn.execute(
                "UPDATE subscriptions SET status = 'active', version = version + 1"
                " WHERE id = $1 AND status IN ('past_due', 'unpaid')", sub_id)
            invoice = await load_invoice(conn, invoice_id)
            if invoice is not None:
                await emit_event(conn, acct, live, "invoice.paid", invoice)
                await emit_event(conn, acct, live, "invoice.payment_succeeded", invoice)
            result = "paid"
        else:
            retries_left = attempt <= len(rules.retry_days)
            next_at = now + rules.retry_days[attempt - 1] * _DAY if retries_left else None
            await conn.execute(
                "UPDATE invoices SET attempt_count = $2, next_payment_attempt = $3 WHERE id = $1",
                invoice_id, attempt, next_at)
            status = "past_due" if retries_left else rules.final_action
            await conn.execute(
                "UPDATE subscriptions SET status = $2, version = version + 1,"
                " canceled_at = CASE WHEN $2 = 'canceled' THEN $3 ELSE canceled_at END,"
                " ended_at = CASE WHEN $2 = 'canceled' THEN $3 ELSE ended_at END"
                " WHERE id = $1 AND status <> 'canceled'", sub_id, status, now)
            invoice = await load_invoice(conn, invoice_id)
            if invoice is not None:
                await emit_event(conn, acct, live, "invoice.payment_failed", invoice)
            await _subscription_event(conn, sub_id, "customer.subscription.updated")
            result = "failed"
    M.charges.labels("succeeded" if result == "paid" else "failed").inc()
    if result == "paid":
        M.invoices.labels("paid").inc()
    return result
