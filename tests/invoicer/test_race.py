"""Several invoicers at once: exactly one invoice per subscription period,
by row locks and the database's unique constraint, not by luck."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from domain.billing import InvoiceRules, close_periods
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import APR, FEB, MAR, T0, customer, price, usage

SUBSCRIPTIONS = 40


async def _subscriptions(
    client: httpx.AsyncClient, clock: str, price_id: str
) -> list[dict[str, Any]]:
    async def one(n: int) -> dict[str, Any]:
        cust = await customer(client)
        sub = await post(
            client,
            "/v1/subscriptions",
            {"customer": cust["id"], "items": [{"price": price_id}], "testClock": clock},
        )
        await usage(client, sub["items"]["data"][0]["id"], n + 1, T0 + 30)
        return sub

    return list(await asyncio.gather(*(one(n) for n in range(SUBSCRIPTIONS))))


async def _due_subscriptions(
    client: httpx.AsyncClient, aggregator: Aggregator, *, until: int
) -> list[dict[str, Any]]:
    """SUBSCRIPTIONS subscriptions with usage on one clock, advanced to ``until``."""
    p = await price(client, unitAmount=100)
    clock = await post(client, "/v1/test_helpers/test_clocks", {"frozenTime": T0})
    subs = await _subscriptions(client, clock["id"], p["id"])
    await aggregator.drain()
    await post(client, f"/v1/test_helpers/test_clocks/{clock['id']}/advance", {"frozenTime": until})
    return subs


async def test_two_invoicers_racing_write_one_invoice_per_period(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    # Three periods due at once; small batches so the two interleave on the same rows.
    subs = await _due_subscriptions(client, aggregator, until=APR)
    racing = settings.model_copy(update={"invoicer_batch": 3})
    async with Invoicer(racing, pool=pool) as first, Invoicer(racing, pool=pool) as second:
        steps = await asyncio.gather(first.tick(), second.tick(), first.tick(), second.tick())
    # Each step happened exactly once across the four ticks: 3 closes, 3 drafts marked
    # closing and 3 finalizes per subscription, and one charge (the later periods had no
    # usage: zero totals, no charge).
    assert sum(steps) == SUBSCRIPTIONS * (3 + 3 + 3 + 1)

    rows = await pool.fetch(
        "SELECT subscription_id, period_start, status, total FROM invoices"
        " WHERE subscription_id = ANY($1::text[])",
        [s["id"] for s in subs],
    )
    per_period = Counter((r["subscription_id"], r["period_start"]) for r in rows)
    assert len(rows) == SUBSCRIPTIONS * 3
    assert set(per_period.values()) == {1}
    assert {start for _, start in per_period} == {T0, FEB, MAR}
    assert {r["status"] for r in rows} == {"paid"}
    totals = {r["subscription_id"]: int(r["total"]) for r in rows if r["period_start"] == T0}
    assert totals == {s["id"]: (n + 1) * 100 for n, s in enumerate(subs)}
    charges = await pool.fetchval(
        "SELECT count(*) FROM charges c JOIN invoices i ON i.id = c.invoice_id"
        " WHERE i.subscription_id = ANY($1::text[])",
        [s["id"] for s in subs],
    )
    assert charges == SUBSCRIPTIONS  # only the first periods had usage
    created = await pool.fetchval(
        "SELECT count(*) FROM events WHERE type = 'invoice.created'"
        " AND data->>'subscription' = ANY($1::text[])",
        [s["id"] for s in subs],
    )
    assert created == SUBSCRIPTIONS * 3
    advanced = await pool.fetch(
        "SELECT period_index, current_period_start FROM subscriptions WHERE id = ANY($1::text[])",
        [s["id"] for s in subs],
    )
    assert {(r["period_index"], r["current_period_start"]) for r in advanced} == {(3, APR)}


async def test_a_period_held_by_one_transaction_is_skipped_by_another(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    """The same due subscriptions closed from two connections at the same moment."""
    subs = await _due_subscriptions(client, aggregator, until=FEB)
    rules = InvoiceRules.from_settings(settings)
    ids = [s["id"] for s in subs]

    async def close(order: list[str]) -> list[tuple[str, str]]:
        async with pool.acquire() as conn:
            return await close_periods(conn, order, rules)

    first, second = await asyncio.gather(close(ids), close(ids[::-1]))
    closed = [sub for _, sub in first + second]
    assert sorted(closed) == sorted(ids)  # each exactly once, between the two
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM invoices WHERE subscription_id = ANY($1::text[])", ids
        )
        == SUBSCRIPTIONS
    )
    # Not due any more: a third attempt writes nothing.
    async with pool.acquire() as conn:
        assert await close_periods(conn, ids, rules) == []


async def test_the_database_refuses_a_second_invoice_for_a_period(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    p = await price(client, unitAmount=100)
    clock = await post(client, "/v1/test_helpers/test_clocks", {"frozenTime": T0})
    cust = await customer(client)
    sub = await post(
        client,
        "/v1/subscriptions",
        {"customer": cust["id"], "items": [{"price": p["id"]}], "testClock": clock["id"]},
    )
    await post(client, f"/v1/test_helpers/test_clocks/{clock['id']}/advance", {"frozenTime": FEB})
    await aggregator.drain()
    await invoicer.tick()
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(
            "INSERT INTO invoices (id, account_id, livemode, customer_pk, subscription_id,"
            " billing_reason, status, currency, period_start, period_end, created)"
            " SELECT 'inv_again', account_id, livemode, customer_pk, subscription_id,"
            " billing_reason, 'draft', currency, period_start, period_end, created"
            " FROM invoices WHERE subscription_id = $1",
            sub["id"],
        )
