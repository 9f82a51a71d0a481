"""Every path that changes what ingest knows about a subscription (status, period, items,
clock time, the previous period's invoice closing) leaves the cached item metadata equal to
what Postgres says, version included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from aggregator.worker import Aggregator
from domain.billing import InvoiceRules, close_periods, finalize_invoices, mark_closing
from domain.itemmeta import ItemMetaStore, load_subscription_item_metas
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import (
    DAY,
    FEB,
    MAR,
    T0,
    advance,
    clocked_subscription,
    get,
    invoices,
    price,
    usage,
)


@pytest.fixture
async def meta(settings: Settings) -> AsyncIterator[ItemMetaStore]:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        yield ItemMetaStore(redis, settings)
    finally:
        await redis.aclose()


async def assert_fresh(pool: asyncpg.Pool, meta: ItemMetaStore, sub: dict[str, Any]) -> int:
    """The cached metadata of every item of ``sub`` is Postgres's; its version."""
    truth = await load_subscription_item_metas(pool, [sub["id"]])
    assert truth
    for item in truth:
        assert await meta.get(item.account_id, item.livemode, item.item_id) == item
    return truth[0].version


async def test_control_plane_and_invoicer_changes_leave_the_cache_fresh(
    client: httpx.AsyncClient,
    aggregator: Aggregator,
    invoicer: Invoicer,
    pool: asyncpg.Pool,
    meta: ItemMetaStore,
) -> None:
    metered, licensed = await price(client), await price(client, metered=False, unitAmount=500)
    sub = await clocked_subscription(
        client, [{"price": metered["id"]}, {"price": licensed["id"], "quantity": 2}]
    )
    versions = [await assert_fresh(pool, meta, sub)]  # created, first invoice paid

    extra = await price(client, aggregate="max")
    await post(client, f"/v1/subscriptions/{sub['id']}", {"items": [{"price": extra["id"]}]})
    versions.append(await assert_fresh(pool, meta, sub))  # an item added

    await usage(client, sub["items"]["data"][0]["id"], 5, T0 + 60)
    await aggregator.drain()
    await advance(client, sub, FEB + 60)
    versions.append(await assert_fresh(pool, meta, sub))  # the clock moved

    await invoicer.tick()  # January closed, marked closing, finalized, paid
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["currentPeriodStart"] == FEB
    versions.append(await assert_fresh(pool, meta, sub))

    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    await invoicer.tick()  # February closed: the period moved again
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["currentPeriodStart"] == MAR
    versions.append(await assert_fresh(pool, meta, sub))

    await post(client, f"/v1/subscriptions/{sub['id']}", {"cancelAtPeriodEnd": True})
    versions.append(await assert_fresh(pool, meta, sub))
    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    await invoicer.tick()  # March is the last period
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "canceled"
    versions.append(await assert_fresh(pool, meta, sub))
    assert versions == sorted(set(versions))  # every step above bumped the version


async def test_cancel_now_and_its_final_invoice_leave_the_cache_fresh(
    client: httpx.AsyncClient, invoicer: Invoicer, pool: asyncpg.Pool, meta: ItemMetaStore
) -> None:
    sub = await clocked_subscription(client, [{"price": (await price(client))["id"]}])
    await advance(client, sub, T0 + 5 * DAY)
    canceled = await client.delete(f"/v1/subscriptions/{sub['id']}")
    assert canceled.status_code == 200, canceled.text
    before = await assert_fresh(pool, meta, sub)
    await invoicer.tick()  # the final invoice
    [final] = await invoices(client, sub["id"])
    assert final["billingReason"] == "subscription_cancel"
    assert await assert_fresh(pool, meta, sub) > before


async def test_dunning_statuses_leave_the_cache_fresh(
    client: httpx.AsyncClient,
    aggregator: Aggregator,
    invoicer: Invoicer,
    pool: asyncpg.Pool,
    meta: ItemMetaStore,
) -> None:
    p = await price(client, unitAmount=100)
    sub = await clocked_subscription(
        client, [{"price": p["id"]}], payment_method="4000000000009995"
    )
    await usage(client, sub["items"]["data"][0]["id"], 10, T0 + 60)
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "past_due"
    await assert_fresh(pool, meta, sub)

    await advance(client, sub, FEB + 21 * DAY)
    await invoicer.tick()  # the retries run out
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "unpaid"
    await assert_fresh(pool, meta, sub)

    await post(client, f"/v1/customers/{sub['customer']}", {"paymentMethod": "pm_card_visa"})
    [invoice] = await invoices(client, sub["id"])
    await post(client, f"/v1/invoices/{invoice['id']}/pay")
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "active"
    await assert_fresh(pool, meta, sub)


async def test_finalizing_a_closing_draft_changes_no_item_metadata(
    client: httpx.AsyncClient,
    aggregator: Aggregator,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    # Why the invoicer's finalize neither bumps nor writes through: what ingest knows is
    # the same before and after, version included.
    sub = await clocked_subscription(client, [{"price": (await price(client))["id"]}])
    await usage(client, sub["items"]["data"][0]["id"], 3, T0 + 60)
    await aggregator.drain()
    await advance(client, sub, FEB + 60)
    async with pool.acquire() as conn:
        await close_periods(conn, [sub["id"]], InvoiceRules.from_settings(settings))
        [(invoice_id, _)] = await mark_closing(
            conn,
            [
                await conn.fetchval(
                    "SELECT id FROM invoices WHERE subscription_id = $1 AND status = 'draft'",
                    sub["id"],
                )
            ],
        )
        closing = await load_subscription_item_metas(conn, [sub["id"]])
        assert [m.prev_open for m in closing] == [False]
        assert await finalize_invoices(conn, [invoice_id], settled_before=2**40) == [
            (invoice_id, sub["id"])
        ]
        assert (await get(client, f"/v1/invoices/{invoice_id}"))["status"] == "open"
        assert await load_subscription_item_metas(conn, [sub["id"]]) == closing
