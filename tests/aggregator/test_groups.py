"""Group mode on a broker that really rebalances: tansu processes, real Postgres.

Members are ``vinr aggregator --group`` subprocesses (the fenced-revocation test runs two
in-process to hold a batch across the hand-over). Every test ends with the windows equal
to the ground truth folded from what was published: no record lost, none counted twice.
tansu's ``end_offsets`` is not the high watermark (docs/adr/0011), so completeness is
read from Postgres — polled until the stored state equals the expected totals.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from domain.wire import UsageMessage
from infra.db import create_pool
from infra.devenv import free_port, isolated_settings
from infra.errors import DependencyUnavailable
from infra.kafka import create_producer
from infra.settings import Settings
from infra.tansu import Tansu
from tests.support.aggregator import (
    CLI,
    Published,
    message,
    publish,
    role_env,
    stored_offsets,
    windows,
)

PARTITIONS = 4
ALL = set(range(PARTITIONS))
SESSION_MS = 6000  # a SIGKILLed member's partitions move after about this long
_ASSIGNED = re.compile(r'^vinr_aggregator_assigned_partitions\{partition="(\d+)"\} ([0-9.]+)$')
_LAG = re.compile(r'^vinr_aggregator_lag\{partition="(\d+)"\} ')


@pytest.fixture(scope="module")
def tansu() -> Iterator[Tansu]:
    with Tansu() as broker:
        yield broker


@pytest.fixture
async def env(tansu: Tansu) -> AsyncIterator[tuple[Settings, asyncpg.Pool]]:
    async with isolated_settings(
        tansu.bootstrap,
        label="groups",
        kafka_idempotent=False,
        aggregator_session_timeout_ms=SESSION_MS,
        aggregator_poll_ms=50,
    ) as settings:
        tansu.create_topic(settings.usage_topic, PARTITIONS)
        pool = await create_pool(settings, min_size=1, max_size=2)
        try:
            yield settings, pool
        finally:
            await pool.close()


def traffic(tag: str, n: int, items: int = 24) -> list[UsageMessage]:
    """Requests over ``items`` items (keyed, so over every partition), with retries."""
    out = [
        message(f"mbu_{tag}{i}", i % items, [(1_700_000_000 + i, i % 7 + 1, i % 11 == 0)])
        for i in range(n)
    ]
    return out + out[: n // 20]  # client retries: the same ids again, counted once


class Member:
    """A ``vinr aggregator --group`` subprocess serving /metrics on its own port."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.name = name
        self.port = free_port()
        fd, self.log = tempfile.mkstemp(prefix=f"vinr-group-{name}-", suffix=".log")
        try:
            self.proc = subprocess.Popen(
                [*CLI, "aggregator", "--group"],
                env=role_env(
                    settings,
                    VINR_METRICS_PORT=str(self.port),
                    VINR_AGGREGATOR_SESSION_TIMEOUT_MS=str(SESSION_MS),
                    VINR_KAFKA_IDEMPOTENT="false",
                ),
                stdout=fd,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(fd)

    def output(self) -> str:
        with open(self.log, encoding="utf-8") as f:
            return f.read()

    async def scrape(self) -> str:
        assert self.proc.poll() is None, f"{self.name} exited: {self.output()[-2000:]}"
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        except httpx.TransportError:
            return ""  # not serving yet

    async def assigned(self) -> dict[int, float]:
        """``vinr_aggregator_assigned_partitions`` as exported: partition → value."""
        out = {}
        for line in (await self.scrape()).splitlines():
            m = _ASSIGNED.match(line)
            if m:
                out[int(m.group(1))] = float(m.group(2))
        return out

    async def owned(self) -> set[int]:
        return {p for p, v in (await self.assigned()).items() if v == 1}

    async def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.proc.wait, 30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


async def split(members: list[Member], timeout_s: float = 40) -> list[set[int]]:
    """Until the members' exported assignments are disjoint, nonempty and cover the topic."""
    deadline = time.monotonic() + timeout_s
    while True:
        owned = [await m.owned() for m in members]
        disjoint = sum(len(o) for o in owned) == PARTITIONS
        if disjoint and set().union(*owned) == ALL and all(owned):
            return owned
        assert time.monotonic() < deadline, f"no split across {len(members)}: {owned}"
        await asyncio.sleep(0.1)


async def settled(
    settings: Settings, pool: asyncpg.Pool, published: Published, timeout_s: float = 40
) -> None:
    """Until Postgres's windows equal the ground truth (the stored state is the watermark
    here); then the ledger and the stored offsets agree with what was published."""
    truth = published.truth()
    deadline = time.monotonic() + timeout_s
    while (got := await windows(pool)) != truth:
        assert time.monotonic() < deadline, (
            f"windows never matched: {len(got)} of {len(truth)};"
            f" differing {[(k, got.get(k), v) for k, v in truth.items() if got.get(k) != v][:3]}"
        )
        await asyncio.sleep(0.2)
    distinct = {m.id for _, _, m in published.entries}
    assert await pool.fetchval("SELECT count(*) FROM usage_ledger") == len(distinct)
    ends: dict[int, int] = {}
    for partition, offset, _ in published.entries:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    assert set(ends) == ALL  # the traffic reached every partition
    assert await stored_offsets(pool, settings) == ends


async def test_two_then_three_members_split_the_partitions(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = Published()
    a, b = Member(settings, "a"), Member(settings, "b")
    members = [a, b]
    try:
        two = await split(members)
        assert sorted(len(o) for o in two) == [2, 2]
        await publish(settings, traffic("w1_", 600), published)
        members.append(Member(settings, "c"))
        sending = asyncio.create_task(publish(settings, traffic("w2_", 600), published))
        three = await split(members)
        await sending
        assert sorted(len(o) for o in three) == [1, 1, 2]
        # a partition that moved reads 0 on the member that lost it
        lost = [
            p for m, before in zip(members, two, strict=False) for p in before - (await m.owned())
        ]
        assert lost
        for p in lost:
            holder = next(m for m, before in zip(members, two, strict=False) if p in before)
            assert (await holder.assigned())[p] == 0
        await settled(settings, pool, published)
        # lag is exported for exactly the partitions each member owns
        deadline = time.monotonic() + 20
        while True:
            lags = []
            for m in members:
                text = await m.scrape()
                lags.append({int(x.group(1)) for x in map(_LAG.match, text.splitlines()) if x})
            if lags == three:
                break
            assert time.monotonic() < deadline, f"lag series {lags}, owned {three}"
            await asyncio.sleep(0.2)
    finally:
        codes = [await m.stop() for m in members]
    assert codes == [0, 0, 0], [m.log for m in members]
    for m in members:
        os.unlink(m.log)


async def test_member_killed_mid_stream_and_one_added_later(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    settings, pool = env
    published = Published()
    a, b = Member(settings, "a"), Member(settings, "b")
    members = [a, b]
    try:
        await split(members)

        async def produce(tag: str, waves: int) -> None:
            for w in range(waves):
                await publish(settings, traffic(f"{tag}{w}_", 150), published)
                await asyncio.sleep(0.1)

        sending = asyncio.create_task(produce("k", 30))
        await asyncio.sleep(1.0)
        b.proc.send_signal(signal.SIGKILL)  # mid-stream, batches in hand
        assert await asyncio.to_thread(b.proc.wait, 10) == -signal.SIGKILL
        assert await split([a], timeout_s=SESSION_MS / 1000 + 20) == [ALL]
        c = Member(settings, "c")
        members.append(c)
        assert sorted(len(o) for o in await split([a, c])) == [2, 2]
        await sending
        await publish(settings, traffic("late_", 300), published)
        await settled(settings, pool, published)
    finally:
        codes = [await m.stop() for m in (a, members[-1])]
    assert codes == [0, 0], [m.log for m in members]
    for m in members:
        os.unlink(m.log)


async def test_a_revoked_member_cannot_commit_its_batch(
    env: tuple[Settings, asyncpg.Pool],
) -> None:
    """Member A prepares batches for all four partitions, then B joins and takes two. The
    worker drops the revoked partitions from what A would submit; and were A to submit
    its old batches anyway (a zombie), Postgres refuses every span B committed."""
    settings, pool = env
    published = Published()
    await publish(settings, traffic("r", 800), published)
    a = Aggregator(settings, group=True, retention_s=None)
    b = Aggregator(settings, group=True, retention_s=None)
    await a.start()
    try:
        held = []
        covered: set[int] = set()
        deadline = time.monotonic() + 30
        while covered != ALL:
            assert time.monotonic() < deadline, f"A fetched only partitions {covered}"
            batch = await a._fetch(200)
            if batch is not None:
                held.append(batch)
                covered |= set(batch.ranges)
        await b.start()
        deadline = time.monotonic() + 30
        while (
            not (b_parts := {tp.partition for tp in b.assignment()})
            or len({tp.partition for tp in a.assignment()} | b_parts) != PARTITIONS
            or {tp.partition for tp in a.assignment()} & b_parts
        ):
            assert time.monotonic() < deadline, "B never got a share"
            await b.step(100)
        a_parts = {tp.partition for tp in a.assignment()}
        assert a_parts and b_parts and a_parts | b_parts == ALL
        # what A would still submit has none of B's partitions
        for batch in held:
            kept = a._owned(batch)
            assert kept is None or not set(kept.ranges) & b_parts
        ends: dict[int, int] = {}
        for partition, offset, _ in published.entries:
            ends[partition] = max(ends.get(partition, 0), offset + 1)

        async def caught_up(parts: set[int]) -> bool:
            stored = await stored_offsets(pool, settings)
            return all(stored.get(p, 0) >= ends[p] for p in parts)

        deadline = time.monotonic() + 30
        while not await caught_up(b_parts):
            assert time.monotonic() < deadline, "B did not commit its partitions"
            await b.step(100)
        # A, a zombie, submits the batches it prepared before the hand-over
        fenced: set[int] = set()
        for batch in held:
            result = await a._apply(batch)
            fenced |= set(result.fenced)
            assert not set(result.committed) & b_parts
        assert fenced >= b_parts
        deadline = time.monotonic() + 30
        while not await caught_up(a_parts):
            assert time.monotonic() < deadline, "A did not commit its partitions"
            await a.step(100)
        assert await windows(pool) == published.truth()
        distinct = {m.id for _, _, m in published.entries}
        assert await pool.fetchval("SELECT count(*) FROM usage_ledger") == len(distinct)
    finally:
        await b.stop()
        await a.stop()


async def test_the_producers_idempotence_is_a_setting(env: tuple[Settings, asyncpg.Pool]) -> None:
    """tansu refuses InitProducerId, so the default (idempotent) producer cannot start on
    it, and ``VINR_KAFKA_IDEMPOTENT=false`` is what lets the ingest publish there."""
    settings, _ = env
    plain = settings.model_copy(update={"kafka_idempotent": False})
    producer = await create_producer(plain)
    try:
        meta = await producer.send_and_wait(settings.usage_topic, b"x", partition=0)
        assert meta.offset == 0
    finally:
        await producer.stop()
    idempotent = settings.model_copy(update={"kafka_idempotent": True})
    with pytest.raises(DependencyUnavailable):
        await create_producer(idempotent)
