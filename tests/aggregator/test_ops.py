"""Operating the aggregator: watermark, retention, replay from the ledger, dead letters.

Watermark, retention and replay run on their own topic and database; the dead-letter test
goes through the public API on the session's stack (a real invoice closes the window).
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest

from aggregator.replay import rebuild_windows
from aggregator.retention import purge_closed_windows
from aggregator.worker import Aggregator
from domain.watermark import Watermark, progress
from domain.wire import UsageMessage
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.aggregator import (
    CLI,
    PERIOD,
    message,
    publish,
    role_env,
    windows,
)
from tests.support.api import eventually, metered_price, post, subscribe

T = PERIOD[0] + 500


@pytest.fixture
async def env(broker: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    async with isolated_settings(broker, label="aggops") as settings:
        pool = await create_pool(settings, min_size=1, max_size=3)
        try:
            yield settings, pool
        finally:
            await pool.close()


def usage(prefix: str, items: range, n: int = 3) -> list[UsageMessage]:
    return [
        message(
            f"mbu_{prefix}{item}_{i}",
            item,
            [(T + i, 5 + i, False), (T + i, 2, i == 1), (T + 40 + i, item, False)],
        )
        for item in items
        for i in range(n)
    ]


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [*CLI, *args],
        env=role_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_watermark_per_partition(env: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = env
    published = await publish(settings, usage("w", range(1, 9)))
    async with Watermark(settings, pool) as watermark:
        ends = await watermark.end_offsets()
        assert sum(ends.values()) == len(published.entries)
        before = await watermark.progress(ends)
        assert [p.partition for p in before] == sorted(ends)
        assert all(p.stored is None and p.lag == ends[p.partition] for p in before)
        assert not await watermark.wait(ends, timeout_s=0.2)
        behind = await cli(settings, "watermark")
        assert behind.returncode == 1 and behind.stdout.strip().endswith("behind")
        async with Aggregator(settings, pool=pool, retention_s=None) as agg:
            await agg.drain()
        assert await watermark.wait(ends, timeout_s=5)
        after = await progress(pool, settings.consumer_group, settings.usage_topic, ends)
        assert all(p.caught_up and p.lag == 0 and p.stored == ends[p.partition] for p in after)
    done = await cli(settings, "watermark", "--wait", "5")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "caught up"
    for partition, end in ends.items():
        assert any(line.split() == [str(partition), str(end), str(end), "0"] for line in lines)


async def test_retention_purges_long_closed_windows_only(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = await publish(settings, usage("r", range(1, 7)))
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
        truth = published.truth()
        # items 1–3: their invoices are finalized (the invoicer sets invoice_id)
        await pool.execute(
            "UPDATE usage_windows SET invoice_id = 'inv_x' || item_pk WHERE item_pk <= 3"
        )
        closed_at = await pool.fetchval("SELECT max(closed_at) FROM usage_windows")
        assert closed_at is not None
        ttl = settings.idempotency_ttl_s
        early = await purge_closed_windows(pool, ledger_ttl_s=ttl, now=closed_at + ttl - 1)
        assert (early.windows, early.points, early.ledger) == (0, 0, 0)
        done = await purge_closed_windows(pool, ledger_ttl_s=ttl, now=closed_at + ttl + 1)
        assert (done.windows, done.ledger) == (3, 9)
        assert done.points == 3 * 6  # T, T+1, T+2, T+40, T+41, T+42 per item
        assert await pool.fetchval("SELECT count(*) FROM usage_points WHERE item_pk <= 3") == 0
        assert await pool.fetchval("SELECT count(*) FROM usage_ledger WHERE item_pk <= 3") == 0
        assert await pool.fetchval("SELECT count(*) FROM usage_ledger WHERE item_pk > 3") == 9
        assert await windows(pool) == truth  # totals stay, for summaries and last_ever
        # a late request for a purged window is dead-lettered, and its ledger row goes with
        # the next pass
        await publish(settings, [message("mbu_late", 2, [(T + 3, 1, False)])])
        await agg.drain()
    dead = await pool.fetch("SELECT ledger_id, reason FROM usage_dead_letters")
    assert [(r["ledger_id"], r["reason"]) for r in dead] == [("mbu_late", "period_invoiced")]
    assert await pool.fetchval("SELECT purged_at FROM usage_windows WHERE item_pk = 2") is None
    again = await purge_closed_windows(pool, ledger_ttl_s=ttl, now=closed_at + ttl + 1)
    assert (again.windows, again.ledger) == (1, 1)
    assert await windows(pool) == truth
    result = await cli(settings, "retention")
    assert result.returncode == 0 and result.stdout.startswith("purged 0 closed window(s)")


async def test_replay_rebuilds_open_windows_from_the_ledger(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = await publish(settings, usage("p", range(1, 6), n=4))
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
    truth = published.truth()
    assert await windows(pool) == truth
    assert not [r for r in await rebuild_windows(pool, write=False) if r.changed]
    # damage: a lost batch on item 1, a wrong point on item 2, a closed window on item 3
    await pool.execute(
        "UPDATE usage_windows SET total = 0, max = 0, last_ts = NULL,"
        " last_quantity = 0, records = 0 WHERE item_pk = 1"
    )
    await pool.execute("UPDATE usage_points SET quantity = 999 WHERE item_pk = 2")
    await pool.execute("UPDATE usage_windows SET max = 999, invoice_id = 'inv_y' WHERE item_pk = 3")
    check = await cli(settings, "replay", "--check")
    assert check.returncode == 1, check.stdout + check.stderr
    assert "window (item 1," in check.stdout and "item 3" not in check.stdout
    rebuilt = await cli(settings, "replay")
    assert rebuilt.returncode == 0, rebuilt.stderr
    got = await windows(pool)
    assert {k: v for k, v in got.items() if k[0] != 3} == {
        k: v for k, v in truth.items() if k[0] != 3
    }
    assert got[(3, PERIOD[0])][1] == 999  # a closed window is never rewritten
    points = await pool.fetch("SELECT ts, quantity FROM usage_points WHERE item_pk = 2 ORDER BY ts")
    assert all(int(p["quantity"]) != 999 for p in points)
    assert (await cli(settings, "replay", "--check")).returncode == 0
    # rebuilt windows keep folding correctly
    await publish(settings, usage("q", range(1, 3)), published)
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
    got = await windows(pool)
    assert {k: v for k, v in got.items() if k[0] != 3} == {
        k: v for k, v in published.truth().items() if k[0] != 3
    }


async def test_late_usage_is_dead_lettered_and_visible(
    client: httpx.AsyncClient,
    settings: Settings,
    pool: asyncpg.Pool,
    aggregator: Aggregator,
    invoicer: Invoicer,
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"], clock=1_790_000_000)
    item = sub["items"]["data"][0]["id"]
    start, end = sub["currentPeriodStart"], sub["currentPeriodEnd"]
    await post(
        client,
        "/v1/usage_records",
        {"subscriptionItem": item, "quantity": 7, "timestamp": start + 10},
        key=f"{item}-1",
    )
    await aggregator.drain()
    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    item_pk = await pool.fetchval("SELECT pk FROM subscription_items WHERE id = $1", item)

    async def closed() -> bool:
        await invoicer.tick()
        return (
            await pool.fetchval(
                "SELECT invoice_id IS NOT NULL FROM usage_windows WHERE item_pk = $1"
                " AND period_start = $2",
                item_pk,
                start,
            )
            is True
        )

    await eventually(closed)
    # a request accepted for that period reaches the aggregator only now
    account = await pool.fetchval(
        "SELECT account_id FROM subscription_items WHERE pk = $1", item_pk
    )
    await publish(
        settings,
        [
            message(
                "mbu_lateapi",
                item_pk,
                [(start + 20, 5, False), (start + 30, 1, True)],
                period=(start, end),
                account=account,
            )
        ],
    )
    await aggregator.drain()

    response = await client.get("/v1/usage_records/dead_letters", params={"subscriptionItem": item})
    assert response.status_code == 200, response.text
    listing = response.json()
    assert listing["object"] == "list" and not listing["hasMore"]
    [dead] = listing["data"]
    assert dead["id"].startswith("dl_") and dead["object"] == "usage_record_dead_letter"
    assert (dead["subscriptionItem"], dead["usageRecord"], dead["reason"]) == (
        item,
        "mbu_lateapi",
        "period_invoiced",
    )
    assert dead["period"] == {"start": start, "end": end}
    assert dead["records"] == [
        {"timestamp": start + 20, "quantity": 5, "action": "increment"},
        {"timestamp": start + 30, "quantity": 1, "action": "set"},
    ]
    summaries = (
        await client.get("/v1/usage_records/summaries", params={"subscriptionItem": item})
    ).json()["data"]
    assert [s["totalUsage"] for s in summaries if s["period"]["start"] == start] == [7]
    events = (await client.get("/v1/events", params={"type": "usage_record.dead_lettered"})).json()[
        "data"
    ]
    assert [e["data"]["id"] for e in events] == [dead["id"]]
    other = (
        await client.get("/v1/usage_records/dead_letters", params={"reason": "invalid_records"})
    ).json()
    assert other["data"] == []
    missing = await client.get(
        "/v1/usage_records/dead_letters", params={"subscriptionItem": "si_nope"}
    )
    assert missing.status_code == 404
    bad = await client.get("/v1/usage_records/dead_letters", params={"reason": "nope"})
    assert bad.status_code == 400
    shown = await cli(settings, "deadletters", "list", "--item", item)
    assert shown.returncode == 0, shown.stderr
    [line] = shown.stdout.splitlines()
    assert orjson.loads(line)["id"] == dead["id"]
