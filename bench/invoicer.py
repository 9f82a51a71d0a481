"""Invoicer benchmark: 10,000 subscriptions whose period has ended, invoiced by one invoicer.

Seeded directly in SQL (customers with a sandbox card, one metered item with a usage window
and one licensed item per subscription, a webhook endpoint taking every event), then:

* **close**: ``Invoicer.tick()`` until nothing is due — each subscription's draft invoice
  priced, written with its lines, the subscription advanced, and ``invoice.created`` +
  ``customer.subscription.updated`` queued in the outbox with their webhook deliveries.
  This is the "invoices/s priced, written and their events queued" target.
* **finalize + charge**: the drafts' grace is moved into the past and ``tick()`` finalizes
  them (closing the usage windows, re-pricing) and charges the sandbox card.
* **lifecycle**: close, finalize and charge end to end, from the first close to the last
  ``invoice.payment_succeeded`` queued, less the settle wait (``VINR_CLOSE_SETTLE_S``, 6 s
  by default: a fixed delay between marking a draft closing and pricing it, paid once per
  tick whatever the number of invoices, so latency and not throughput). The wait is its
  own row.
* **ceilings**: the same rows written with the fastest bare bulk writes — ``COPY`` for
  the events (as the outbox writes them), ``INSERT … SELECT unnest(…)`` / ``UPDATE … FROM
  unnest(…)`` for the rest — in transactions of the invoicer's batch size: what Postgres
  alone costs for that output, with no pricing, rendering or locking. For close: invoices,
  lines, 2 events and their deliveries each. For the lifecycle: those, then each invoice
  opened, charged (a charge row) and paid, and 3 more events with their deliveries, the
  events carrying a payload of the size the invoicer writes.
"""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from bench.common import Figure
from domain.clock import now_s
from domain.periods import period_at
from infra.db import create_pool
from infra.devenv import isolated_settings
from invoicer.worker import Invoicer

__all__ = ["run"]

SUBSCRIPTIONS = 10_000
TARGET = 2_000.0
_ACCOUNT = "acct_bench"

_METERED = {
    "currency": "eur",
    "billingScheme": "per_unit",
    "unitAmount": None,
    "unitAmountDecimal": "0.2",
    "tiers": None,
    "tiersMode": None,
    "transformQuantity": None,
}
_LICENSED = _METERED | {"unitAmount": 500, "unitAmountDecimal": None}


async def seed(conn: asyncpg.Connection[Any], n: int, *, anchor: int) -> None:
    """``n`` active daily subscriptions anchored at ``anchor``, each with a metered item
    (a usage window holding ``g * 7`` units) and a licensed item (quantity 2), and a
    customer whose default card succeeds."""
    period = period_at(anchor, "day", 1, 0)
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO accounts (id, name, created) VALUES ($1, 'bench', $2::bigint)",
            _ACCOUNT,
            anchor,
        )
        await conn.execute(
            "INSERT INTO products (id, account_id, livemode, name, created)"
            " VALUES ('prod_bench', $1, false, 'API access', $2::bigint)",
            _ACCOUNT,
            anchor,
        )
        await conn.execute(
            "INSERT INTO prices (id, account_id, livemode, product_id, currency, terms,"
            " interval, interval_count, usage_type, aggregate_usage, created) VALUES"
            " ('price_bench_m', $1, false, 'prod_bench', 'eur', $2::jsonb, 'day', 1,"
            "  'metered', 'sum', $4::bigint),"
            " ('price_bench_l', $1, false, 'prod_bench', 'eur', $3::jsonb, 'day', 1,"
            "  'licensed', NULL, $4::bigint)",
            _ACCOUNT,
            _METERED,
            _LICENSED,
            anchor,
        )
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, account_id, livemode, url, enabled_events,"
            " secret, created) VALUES ('we_bench', $1, false, 'http://127.0.0.1:9/hooks',"
            " '{*}', 'whsec_bench', $2::bigint)",
            _ACCOUNT,
            anchor,
        )
        await conn.execute(
            "INSERT INTO customers (id, account_id, livemode, name, default_pm, created)"
            " SELECT 'cust_b' || g, $1, false, 'bench ' || g, 'pm_b' || g, $2::bigint"
            " FROM generate_series(1, $3::bigint) g",
            _ACCOUNT,
            anchor,
            n,
        )
        await conn.execute(
            "INSERT INTO payment_methods (id, account_id, livemode, customer_pk, kind, brand,"
            " last4, created) SELECT 'pm_b' || substr(c.id, 7), $1, false, c.pk,"
            " 'pm_card_visa', 'visa', '4242', $2::bigint FROM customers c"
            " WHERE c.account_id = $1",
            _ACCOUNT,
            anchor,
        )
        await conn.execute(
            "INSERT INTO subscriptions (id, account_id, livemode, customer_pk, status, currency,"
            " interval, interval_count, anchor, current_period_start, current_period_end,"
            " created) SELECT 'sub_b' || substr(c.id, 7), $1, false, c.pk, 'active', 'eur',"
            " 'day', 1, $2::bigint, $3::bigint, $4::bigint, $2::bigint FROM customers c"
            " WHERE c.account_id = $1",
            _ACCOUNT,
            anchor,
            period.start,
            period.end,
        )
        await conn.execute(
            "INSERT INTO subscription_items (id, account_id, livemode, subscription_id,"
            " price_id, quantity, created)"
            " SELECT 'si_bm' || substr(s.id, 6), $1, false, s.id, 'price_bench_m', NULL,"
            " $2::bigint FROM subscriptions s WHERE s.account_id = $1"
            " UNION ALL SELECT 'si_bl' || substr(s.id, 6), $1, false, s.id, 'price_bench_l', 2,"
            " $2::bigint FROM subscriptions s WHERE s.account_id = $1",
            _ACCOUNT,
            anchor,
        )
        await conn.execute(
            "INSERT INTO usage_windows (item_pk, period_start, period_end, total, max, last_ts,"
            " last_quantity, records, updated)"
            " SELECT si.pk, $2::bigint, $3::bigint, substr(si.id, 6)::int * 7, 7, $2::bigint,"
            " 7, substr(si.id, 6)::int, $2::bigint FROM subscription_items si"
            " WHERE si.account_id = $1 AND si.price_id = 'price_bench_m'",
            _ACCOUNT,
            period.start,
            period.end,
        )
    await conn.execute("ANALYZE")


async def _tick_until_idle(invoicer: Invoicer) -> int:
    steps = 0
    while worked := await invoicer.tick():
        steps += worked
    return steps


async def _bulk_events(
    conn: asyncpg.Connection[Any],
    ids: list[str],
    tag: str,
    event: dict[str, Any],
    ts: int,
    *,
    per_invoice: int = 3,
    type_: str = "invoice.paid",
) -> None:
    """``per_invoice`` events of each invoice and a delivery of each, as the outbox writes
    them: the events with ``COPY``, the deliveries with ``INSERT … SELECT unnest(…)``."""
    evt = [f"evt_{tag}{i}_{k}" for i in ids for k in range(1, per_invoice + 1)]
    await conn.copy_records_to_table(
        "events",
        columns=("id", "account_id", "livemode", "type", "data", "created"),
        records=[(e, _ACCOUNT, False, type_, event, ts) for e in evt],
    )
    await conn.execute(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, next_attempt_at,"
        " created) SELECT 'whd_' || md5(e), e, 'we_bench', $2::float8, $2::bigint"
        " FROM unnest($1::text[]) e",
        evt,
        ts,
    )


async def _ceiling(
    conn: asyncpg.Connection[Any],
    n: int,
    batch: int,
    *,
    tag: str = "ceil",
    settle_event: dict[str, Any] | None = None,
) -> float:
    """Seconds to write n invoices' rows (1 invoice, 2 lines, 2 events, 2 deliveries each)
    with bare bulk inserts, ``batch`` invoices per transaction; with ``settle_event``, then
    what finalizing and charging them writes (the invoices opened, then paid, a charge and
    3 events of that payload with their deliveries each)."""
    ts = now_s()
    event = {"object": "invoice", "lines": {"data": [{"amount": 1}, {"amount": 2}]}}
    if settle_event is not None:
        event = settle_event
    cust_pk = await conn.fetchval("SELECT min(pk) FROM customers")
    started = time.perf_counter()
    for lo in range(0, n, batch):
        ids = [f"inv_{tag}{i}" for i in range(lo, min(lo + batch, n))]
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO invoices (id, account_id, livemode, customer_pk, billing_reason,"
                " status, currency, period_start, period_end, finalize_at, created)"
                " SELECT id, $2, false, $3, 'ceiling', 'draft', 'eur', $4, $4, $4, $4"
                " FROM unnest($1::text[]) id",
                ids,
                _ACCOUNT,
                cust_pk,
                ts,
            )
            await conn.execute(
                "INSERT INTO invoice_lines (id, invoice_id, position, type, description,"
                " quantity, amount, period_start, period_end)"
                " SELECT 'il_' || i || p, i, p, 'subscription', 'x', 1, 1, $2, $2"
                " FROM unnest($1::text[]) i, generate_series(1, 2) p",
                ids,
                ts,
            )
            await _bulk_events(conn, ids, tag, event, ts, per_invoice=2, type_="invoice.created")
    if settle_event is None:
        return time.perf_counter() - started
    for lo in range(0, n, batch):
        ids = [f"inv_{tag}{i}" for i in range(lo, min(lo + batch, n))]
        async with conn.transaction():
            await conn.execute(
                "UPDATE invoices i SET status = 'open', finalized_at = $2,"
                " next_payment_attempt = $2 FROM unnest($1::text[]) v(id) WHERE i.id = v.id",
                ids,
                ts,
            )
            await _bulk_events(conn, ids, f"{tag}f", event, ts)
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO charges (id, account_id, livemode, invoice_id, attempt, amount,"
                " currency, payment_method, status, created)"
                " SELECT 'ch_' || i, $2, false, i, 1, 100, 'eur', 'pm_b1', 'succeeded', $3"
                " FROM unnest($1::text[]) i",
                ids,
                _ACCOUNT,
                ts,
            )
            await conn.execute(
                "UPDATE invoices i SET status = 'paid', paid_at = $2, amount_paid = i.total,"
                " attempt_count = 1, next_payment_attempt = NULL"
                " FROM unnest($1::text[]) v(id) WHERE i.id = v.id",
                ids,
                ts,
            )
    return time.perf_counter() - started


async def run(broker: str) -> list[Figure]:
    n = SUBSCRIPTIONS
    async with isolated_settings(
        broker, label="bench_invoicer", finalization_grace_s=3_600
    ) as settings:
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            # The day's period ended a minute ago: due, but its 1 h grace still runs.
            anchor = now_s() - 86_400 - 60
            async with pool.acquire() as conn:
                await seed(conn, n, anchor=anchor)
            async with Invoicer(settings, pool=pool) as invoicer:
                started = time.perf_counter()
                closed = await _tick_until_idle(invoicer)
                close_s = time.perf_counter() - started
                drafts = await pool.fetchval("SELECT count(*) FROM invoices WHERE status = 'draft'")
                events = await pool.fetchval("SELECT count(*) FROM events")
                print(
                    f"  closed {closed} periods in {close_s:.2f}s: {drafts} drafts,"
                    f" {events} events",
                    flush=True,
                )
                await pool.execute("UPDATE invoices SET finalize_at = $1", now_s() - 1)
                started = time.perf_counter()
                await _tick_until_idle(invoicer)
                settle_s = time.perf_counter() - started
                waited_s = invoicer.settle_waited_s
                paid = await pool.fetchval("SELECT count(*) FROM invoices WHERE status = 'paid'")
                charges = await pool.fetchval("SELECT count(*) FROM charges")
                print(
                    f"  finalized and charged in {settle_s:.2f}s: {paid} paid, {charges} charges",
                    flush=True,
                )
            payload = await pool.fetchval(
                "SELECT data FROM events WHERE type = 'invoice.payment_succeeded' LIMIT 1"
            )
            async with pool.acquire() as conn:
                ceiling_s = await _ceiling(conn, n, settings.invoicer_batch)
                life_ceiling_s = await _ceiling(
                    conn, n, settings.invoicer_batch, tag="life", settle_event=payload
                )
        finally:
            await pool.close()
    if drafts != n or paid != n:
        raise RuntimeError(f"expected {n} invoices; got {drafts} drafts and {paid} paid")
    rate, ceiling = n / close_s, n / ceiling_s
    settle_rate = n / (settle_s - waited_s)
    life_rate, life_ceiling = n / (close_s + settle_s - waited_s), n / life_ceiling_s
    return [
        Figure(
            "invoicer",
            f"close {n:,} periods: priced, written, events queued",
            rate,
            "invoices/s",
            target="≥ 2,000",
            ceiling=ceiling,
            ceiling_label="bulk COPY/INSERT of the same rows",
            passed=rate >= TARGET,
        ),
        Figure(
            "invoicer",
            "finalize + charge (sandbox card), less the settle wait",
            settle_rate,
            "invoices/s",
        ),
        Figure("invoicer", "settle wait (VINR_CLOSE_SETTLE_S), once per tick", waited_s, "s"),
        Figure(
            "invoicer",
            f"lifecycle {n:,}: close → finalize → charge → events, less the settle wait",
            life_rate,
            "invoices/s",
            target="≥ 2,000",
            ceiling=life_ceiling,
            ceiling_label="bulk COPY/INSERT/UPDATE of the same rows",
            passed=life_rate >= TARGET,
        ),
    ]
