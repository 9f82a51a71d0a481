"""On the real clock a period's invoice stays a draft for the finalization grace (
default 1 h), and usage that lands during the grace is on the invoice."""

from __future__ import annotations

import time

import asyncpg
import httpx
from redis.asyncio import Redis

from aggregator.worker import Aggregator
from domain.itemmeta import ItemMetaStore
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.api import post, subscribe
from tests.support.billing import DAY, get, invoices, price, usage


async def _ended_a_moment_ago(pool: asyncpg.Pool, settings: Settings, sub_id: str) -> int:
    """Move a new daily subscription one day back, so its first period ended 100 s ago."""
    anchor = int(time.time()) - DAY - 100
    await pool.execute(
        "UPDATE subscriptions SET anchor = $2::bigint, created = $2::bigint,"
        " current_period_start = $2::bigint,"
        " current_period_end = $2::bigint + 86400, version = version + 1 WHERE id = $1",
        sub_id,
        anchor,
    )
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        await ItemMetaStore(redis, settings).refresh(pool, [sub_id])
    finally:
        await redis.aclose()
    return anchor + DAY


async def test_draft_waits_for_the_grace_and_takes_the_usage_that_arrives_meanwhile(
    client: httpx.AsyncClient,
    settings: Settings,
    pool: asyncpg.Pool,
    aggregator: Aggregator,
    invoicer: Invoicer,
) -> None:
    p = await price(client, interval="day", unitAmount=10)
    sub = await subscribe(client, p["id"])
    item = sub["items"]["data"][0]["id"]
    end = await _ended_a_moment_ago(pool, settings, sub["id"])
    await usage(client, item, 10, end - 500)
    await aggregator.drain()
    await invoicer.tick()

    [draft] = await invoices(client, sub["id"])
    assert (draft["status"], draft["periodEnd"], draft["total"]) == ("draft", end, 100)
    assert draft["finalizedAt"] is None
    moved = await get(client, f"/v1/subscriptions/{sub['id']}")
    assert moved["currentPeriodStart"] == end

    # The first minutes of the new period still take the last ones of the old (sum).
    await post(
        client, "/v1/usage_records", {"subscriptionItem": item, "quantity": 5, "timestamp": end - 1}
    )
    await aggregator.drain()
    await invoicer.tick()
    assert (await get(client, f"/v1/invoices/{draft['id']}"))["status"] == "draft"

    row = await pool.fetchrow("SELECT finalize_at FROM invoices WHERE id = $1", draft["id"])
    assert row["finalize_at"] == end + settings.finalization_grace_s == end + 3600
    await pool.execute(
        "UPDATE invoices SET finalize_at = $2 WHERE id = $1", draft["id"], int(time.time()) - 1
    )  # the hour has passed
    await invoicer.tick()
    final = await get(client, f"/v1/invoices/{draft['id']}")
    assert (final["status"], final["total"]) == ("paid", 150)
    assert final["lines"]["data"][0]["quantity"] == 15
    late = await client.post(
        "/v1/usage_records", json={"subscriptionItem": item, "quantity": 1, "timestamp": end - 1}
    )
    assert late.status_code == 400  # its invoice is final now
