"""Exactly-once folding, in-process, each test on its own topic and database.

Every test checks the windows against the independent ground truth of what it published
(``aggregator_helpers.Published.truth``): zero lost, zero double counted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from aggregator.replay import rebuild_windows
from aggregator.worker import Aggregator
from domain.wire import UsageMessage, encode_usage, item_key
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings
from tests.support.aggregator import (
    PERIOD,
    message,
    publish,
    stored_offsets,
    windows,
)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


T = PERIOD[0] + 1_000


@pytest.fixture
async def env(broker: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    async with isolated_settings(
        broker, label="aggx", aggregator_max_records=7, aggregator_poll_ms=20
    ) as settings:
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            yield settings, pool
        finally:
            await pool.close()


def traffic(n: int, *, items: int = 5, prefix: str = "r") -> list[UsageMessage]:
    """Singles and small batches over a few items, with sets and equal timestamps."""
    out = []
    for i in range(n):
        item = 100 + i % items
        if i % 3 == 0:
            records = [(T + (i * 7 + j) % 11, j + i % 4, (i + j) % 5 == 0) for j in range(20)]
        else:
            records = [(T + i % 13, i % 9, i % 4 == 0)]
        out.append(message(f"mbu_{prefix}{i}", item, records))
    return out


async def test_duplicates_sets_and_many_batches(env: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = env
    msgs = traffic(60)
    # client retries that slipped past Redis: the same request id, published again later
    retries = [msgs[3], msgs[10], msgs[10], msgs[41]]
    published = await publish(settings, msgs[:30] + retries[:2] + msgs[30:] + retries[2:])
    duplicates_before = metric("vinr_aggregator_duplicates_total")
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        folded = await agg.drain()
    assert await windows(pool) == published.truth()
    assert folded == sum(len(m.records) for m in msgs)
    assert metric("vinr_aggregator_duplicates_total") - duplicates_before == len(retries)
    ledger = await pool.fetchval("SELECT count(*) FROM usage_ledger")
    assert ledger == len(msgs)


async def test_restart_seeks_to_the_offsets_in_postgres(env: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = env
    published = await publish(settings, traffic(20, prefix="a"))
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        first = await agg.drain()
    stored = await stored_offsets(pool, settings)
    assert sum(stored.values()) == 20
    await publish(settings, traffic(20, prefix="b"), published)
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        second = await agg.drain()
    # the second run started at the stored offsets: it folded only the new requests
    assert first == second == sum(len(m.records) for m in traffic(20))
    assert await windows(pool) == published.truth()


async def test_a_zombie_batch_is_fenced(env: tuple[Settings, asyncpg.Pool]) -> None:
    """A consumer still holding a batch from offsets another one already committed."""
    settings, pool = env
    published = await publish(settings, traffic(30))
    fenced_before = metric("vinr_aggregator_fenced_total")
    async with (
        Aggregator(settings, pool=pool, retention_s=None) as zombie,
        Aggregator(settings, pool=pool, retention_s=None) as live,
    ):
        # both sought to the same stored offsets; the live one commits everything first
        await live.drain()
        assert await windows(pool) == published.truth()
        committed = await stored_offsets(pool, settings)
        assert await zombie.step(1_000) == 0  # its batch is refused ...
        assert metric("vinr_aggregator_fenced_total") > fenced_before
        assert await stored_offsets(pool, settings) == committed  # offsets never go back
        assert await zombie.drain() == 0  # ... and it sought past the work
        await publish(settings, traffic(9, prefix="late"), published)
        await zombie.drain()  # the zombie takes over cleanly
    assert await windows(pool) == published.truth()


async def test_two_aggregators_racing_on_the_same_partitions(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = await publish(settings, traffic(90))
    async with (
        Aggregator(settings, pool=pool, retention_s=None) as a,
        Aggregator(settings, pool=pool, retention_s=None) as b,
    ):
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
        await consumer.start()
        try:
            tps = [TopicPartition(settings.usage_topic, p) for p in range(4)]
            ends = {tp.partition: o for tp, o in (await consumer.end_offsets(tps)).items()}
        finally:
            await consumer.stop()
        seen = await stored_offsets(pool, settings)
        for _ in range(200):
            await asyncio.gather(a.step(50), b.step(50))
            now = await stored_offsets(pool, settings)
            assert all(now[p] >= seen[p] for p in seen), "a stored offset went back"
            seen = now
            if now == ends:
                break
        assert a.records + b.records == sum(len(m.records) for m in traffic(90))
    assert await windows(pool) == published.truth()


async def test_pipelined_run_and_graceful_stop(env: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = env
    published = await publish(settings, traffic(120))
    agg = Aggregator(settings, pool=pool, retention_s=None)
    await agg.start()
    runner = asyncio.create_task(agg.run())
    for _ in range(500):
        if sum((await stored_offsets(pool, settings)).values()) == 120:
            break
        await asyncio.sleep(0.02)
    agg.request_stop()
    await asyncio.wait_for(runner, 10)
    await agg.stop()
    assert await windows(pool) == published.truth()


async def test_group_membership_seeks_to_postgres_on_assignment(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    """With Kafka group membership, Kafka's committed offsets are ignored: on assignment
    the consumer seeks to the offsets stored with the windows."""
    settings, pool = env
    published = await publish(settings, traffic(24, prefix="g"))
    async with Aggregator(settings, pool=pool, retention_s=None) as manual:
        await manual.drain()
    await publish(settings, traffic(12, prefix="h"), published)
    async with Aggregator(settings, pool=pool, group=True, retention_s=None) as member:
        folded = await member.drain()
    assert folded == sum(len(m.records) for m in traffic(12))
    assert await windows(pool) == published.truth()


async def test_malformed_requests_are_dead_lettered_not_dropped(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    good = traffic(6)
    bad = [
        message("mbu_bad1", 100, [(PERIOD[1] + 5, 1, False)]),  # outside its period
        message("mbu_bad2", 101, [(T, 1, False), (T, -3, False)]),  # negative
        # an item no bigint column holds: refused as the request's, not the batch's
        message("mbu_bad3", 2**63, [(T, 1, False)]),
    ]
    published = await publish(settings, good)
    await publish(settings, bad)
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
        await publish(settings, [bad[0]])  # a retry of it
        await agg.drain()
    assert await windows(pool) == published.truth()
    rows = await pool.fetch(
        "SELECT ledger_id, reason, payload FROM usage_dead_letters ORDER BY ledger_id"
    )
    assert [(r["ledger_id"], r["reason"]) for r in rows] == [
        ("mbu_bad1", "invalid_records"),
        ("mbu_bad2", "invalid_records"),
        ("mbu_bad3", "invalid_records"),
    ]
    assert rows[0]["payload"]["records"] == [[PERIOD[1] + 5, 1, False]]
    assert "item_pk 9223372036854775808 is not a bigint" in rows[2]["payload"]["error"]


async def test_undecodable_messages_are_skipped_and_counted(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = await publish(settings, traffic(4))
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.usage_topic, b"not json", key=b"100")
        await producer.send_and_wait(settings.usage_topic, b'{"v": 99}', key=b"101")
    finally:
        await producer.stop()
    await publish(settings, traffic(4, prefix="after"), published)
    before = metric("vinr_aggregator_dead_letters_total", reason="undecodable")
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
    assert metric("vinr_aggregator_dead_letters_total", reason="undecodable") - before == 2
    assert await windows(pool) == published.truth()
    assert sum((await stored_offsets(pool, settings)).values()) == 10


async def test_hostile_quantities_beyond_bigint(env: tuple[Settings, asyncpg.Pool]) -> None:
    settings, pool = env
    big = 2**53
    msgs = [message(f"mbu_big{i}", 7, [(T + 1, big, False)] * 1000) for i in range(3)]
    published = await publish(settings, msgs)
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
    got = await windows(pool)
    assert got == published.truth()
    assert got[(7, PERIOD[0])][0] == 3000 * big > 2**63


def test_traffic_has_collisions_and_sets() -> None:
    """The fixture data exercises what it claims to (equal timestamps, sets)."""
    recs = list(itertools.chain.from_iterable(m.records for m in traffic(60)))
    assert any(s for _, _, s in recs) and not all(s for _, _, s in recs)
    assert len({ts for ts, _, _ in recs}) < len(recs) / 10


async def test_windows_deleted_by_hand_come_back_and_replay_restores_them(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = await publish(settings, traffic(12, prefix="k"))
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
        await pool.execute("DELETE FROM usage_windows")
        await publish(settings, traffic(12, prefix="m"), published)
        await agg.drain()  # it believed those windows existed: they are recreated
    after = await windows(pool)
    assert set(after) == set(published.truth())
    await rebuild_windows(pool)  # the ledger still holds every request
    assert await windows(pool) == published.truth()


async def test_requests_sharing_a_message_fold_and_replay_in_their_order(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    """The ingest packs single records into one message; their order inside it is arrival
    order — an increment then a set at one timestamp leaves the set's value, also on replay."""
    from aiokafka import AIOKafkaProducer

    settings, pool = env
    ts = T + 7
    msgs = [
        message(f"mbu_pack{i}", 9, [(ts, q, s)])
        for i, (q, s) in enumerate([(5, False), (2, True), (4, False), (1, True)] * 5)
    ]
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(settings.usage_topic, encode_usage(*msgs), key=item_key(9))
    finally:
        await producer.stop()
    expected = (1, 1, ts, 1, 20)  # the last set at ts wins; 20 records
    async with Aggregator(settings, pool=pool, retention_s=None) as agg:
        await agg.drain()
    assert (await windows(pool))[(9, PERIOD[0])] == expected
    rows = await pool.fetch(
        "SELECT kafka_index FROM usage_ledger WHERE id LIKE 'mbu_pack%' ORDER BY kafka_index"
    )
    assert [r["kafka_index"] for r in rows] == list(range(20))
    await pool.execute("UPDATE usage_windows SET total = 0, max = 0 WHERE item_pk = 9")
    await rebuild_windows(pool)
    assert (await windows(pool))[(9, PERIOD[0])] == expected
