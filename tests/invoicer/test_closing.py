"""Two-phase finalization: once a draft is marked closing, ingest stops placing usage in its
period, so nothing a client was told was accepted can miss the invoice."""

from __future__ import annotations

import asyncpg
import httpx
from redis.asyncio import Redis

from aggregator.worker import Aggregator
from domain.billing import InvoiceRules, close_periods, finalize_invoices, mark_closing
from domain.itemmeta import ItemMetaStore
from infra.settings import Settings
from tests.support.api import metered_price, post, subscribe

T0 = 1_790_000_000


async def test_late_usage_is_accepted_until_the_draft_is_closing(
    client: httpx.AsyncClient, aggregator: Aggregator, pool: asyncpg.Pool, settings: Settings
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"], clock=T0)
    item = sub["items"]["data"][0]["id"]
    end = sub["currentPeriodEnd"]
    await post(
        client,
        "/v1/usage_records",
        {"subscriptionItem": item, "quantity": 100, "timestamp": T0 + 5},
    )
    await post(
        client, f"/v1/test_helpers/test_clocks/{sub['testClock']}/advance", {"frozenTime": end + 60}
    )
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    meta = ItemMetaStore(redis, settings)
    try:
        async with pool.acquire() as conn:
            await close_periods(conn, [sub["id"]], InvoiceRules.from_settings(settings))
            await meta.refresh(conn, [sub["id"]])
            invoice_id = await conn.fetchval(
                "SELECT id FROM invoices WHERE subscription_id = $1", sub["id"]
            )
            # Draft, not closing: a `sum` record for the last minute of the old period is
            # still accepted during the first minutes of the new one.
            late = {"subscriptionItem": item, "quantity": 7, "timestamp": end - 30}
            await post(client, "/v1/usage_records", late)
            assert await mark_closing(conn, [invoice_id]) == [(invoice_id, sub["id"])]
            await meta.refresh(conn, [sub["id"]])
            refused = await client.post("/v1/usage_records", json=late | {"quantity": 9})
            assert refused.status_code == 400
            assert refused.json()["error"]["code"] == "timestamp_before_period"
            await aggregator.drain()
            # Not settled yet: finalizing waits for the settle time after closing.
            assert await finalize_invoices(conn, [invoice_id], settled_before=0) == []
            assert await finalize_invoices(conn, [invoice_id], settled_before=2**40) == [
                (invoice_id, sub["id"])
            ]
    finally:
        await redis.aclose()
    invoice = (await client.get(f"/v1/invoices/{invoice_id}")).json()
    assert invoice["lines"]["data"][0]["quantity"] == 107
