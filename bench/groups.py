"""Groups stage: one and two ``vinr aggregator --group`` members sharing a topic on tansu.

What a deployment sizes from: records/s per member and in total, CPU seconds per member
(Linux ``/proc``) and records/s per core, against a ceiling measured in the same run — a
bare aiokafka loop reading the same topic from the same broker. Each round starts the
members on a fresh, empty 4-partition topic (fresh group, fresh tables), waits until
their exported assignments split the partitions, then publishes the aggregator stage's
``mixed`` workload and times until the stored offsets reach what was published. tansu's
``end_offsets`` is not the high watermark (docs/adr/0011), so the ends are taken from the
producer's acknowledgements. Every round's windows are checked against the ground truth.

The machine's cores are shared by the members, Postgres, tansu and this process (and
other work on the machine), so two members add less than a second machine would: read the
ratios, and the per-core figure, not the absolute rates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import statistics
import sys
import time
from dataclasses import dataclass

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.aggregator import (
    MIXES,
    Mix,
    Workload,
    bare_loop,
    build_workload,
    check_windows,
    reset_tables,
)
from bench.common import Figure, bench_env
from domain.watermark import caught_up
from infra.db import create_pool
from infra.devenv import free_port, isolated_settings
from infra.settings import Settings
from infra.tansu import Tansu

STAGE = "groups"
PARTITIONS = 4
ROUNDS = 3
# The aggregator stage's mixed traffic, four times as much (a round lasts seconds, not one).
MIX = Mix("mixed", 2_000_000, MIXES[0].single_share)
_ASSIGNED = re.compile(r'^vinr_aggregator_assigned_partitions\{partition="(\d+)"\} 1\.0$', re.M)
_RECORDS = re.compile(r"^vinr_aggregator_records_total ([0-9.e+]+)$", re.M)


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backends_cpu(pool: asyncpg.Pool) -> dict[int, float]:
    """CPU seconds so far of every client backend on this database (the members' work in
    Postgres; this process's own polling is a small part of it)."""
    pids = await pool.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND backend_type = 'client backend'"
    )
    out = {}
    for row in pids:
        with contextlib.suppress(OSError):
            out[row["pid"]] = _cpu_s(row["pid"])
    return out


@dataclass
class _Member:
    proc: asyncio.subprocess.Process
    port: int

    async def metrics(self) -> str:
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient(timeout=2) as client:
                return (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return ""


async def _start(settings: Settings, n: int) -> list[_Member]:
    members = []
    for _ in range(n):
        port = free_port()
        env = bench_env(settings) | {
            "VINR_METRICS_PORT": str(port),
            "VINR_KAFKA_IDEMPOTENT": "false",
            "VINR_AGGREGATOR_SESSION_TIMEOUT_MS": "6000",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vinr.cli", "aggregator", "--group", env=env
        )
        members.append(_Member(proc, port))
    deadline = time.monotonic() + 60
    while True:
        owned = [set(map(int, _ASSIGNED.findall(await m.metrics()))) for m in members]
        if all(owned) and sum(map(len, owned)) == PARTITIONS:
            return members
        if time.monotonic() > deadline or any(m.proc.returncode is not None for m in members):
            await _stop(members)
            raise RuntimeError(f"the members did not split the partitions: {owned}")
        await asyncio.sleep(0.1)


async def _stop(members: list[_Member]) -> None:
    for m in members:
        if m.proc.returncode is None:
            m.proc.send_signal(signal.SIGTERM)
    for m in members:
        try:
            await asyncio.wait_for(m.proc.wait(), 30)
        except TimeoutError:
            m.proc.kill()
            await m.proc.wait()


async def _publish(settings: Settings, workload: Workload) -> dict[int, int]:
    """The workload onto the topic; each partition's end from the acknowledgements."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=5,
        max_batch_size=512 * 1024,
        max_request_size=4 * 1024 * 1024,
        acks="all",
    )
    await producer.start()
    try:
        sends = [
            await producer.send(settings.usage_topic, value, key=key, partition=partition)
            for partition, key, value in workload.messages
        ]
        ends: dict[int, int] = {}
        for meta in await asyncio.gather(*sends):
            ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
        return ends
    finally:
        await producer.stop()


@dataclass
class _Round:
    seconds: float
    records: list[float]  # per member, folded
    cpu_s: list[float]  # per member
    postgres_cpu_s: float  # the database's client backends


async def _round(
    base: Settings, tansu: Tansu, pool: asyncpg.Pool, workload: Workload, n: int, k: int
) -> tuple[_Round, int]:
    """(the round, windows off the ground truth)."""
    settings = base.model_copy(
        update={
            "usage_topic": f"{base.usage_topic}.{n}m{k}",
            "consumer_group": f"{base.consumer_group}-{n}m{k}",
        }
    )
    tansu.create_topic(settings.usage_topic, PARTITIONS)
    await reset_tables(pool)
    members = await _start(settings, n)
    try:
        cpu0 = [_cpu_s(m.proc.pid) for m in members]
        pg0 = await _backends_cpu(pool)
        started = time.perf_counter()
        ends = await _publish(settings, workload)
        deadline = time.monotonic() + 120
        while True:
            if await caught_up(pool, settings.consumer_group, settings.usage_topic, ends):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{n} member(s) did not catch up")
            await asyncio.sleep(0.02)
        seconds = time.perf_counter() - started
        cpu = [_cpu_s(m.proc.pid) - c for m, c in zip(members, cpu0, strict=True)]
        pg = sum(c - pg0.get(pid, 0.0) for pid, c in (await _backends_cpu(pool)).items())
        while True:  # the members count a batch just after its commit
            records = []
            for m in members:
                found = _RECORDS.findall(await m.metrics())
                records.append(float(found[0]) if found else 0.0)
            if sum(records) >= workload.records or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
    finally:
        await _stop(members)
    return _Round(seconds, records, cpu, pg), await check_windows(pool, workload)


async def run(broker: str) -> list[Figure]:
    """``broker`` (the dev broker) is not used: its mock cluster cannot rebalance two."""
    del broker
    with Tansu() as tansu:
        async with isolated_settings(tansu.bootstrap, label="benchgrp") as settings:
            pool = await create_pool(settings, min_size=1, max_size=2)
            try:
                return await _run(settings, tansu, pool)
            finally:
                await pool.close()


async def _run(settings: Settings, tansu: Tansu, pool: asyncpg.Pool) -> list[Figure]:
    workload = build_workload(MIX, list(range(PARTITIONS)))
    tansu.create_topic(settings.usage_topic, PARTITIONS)
    ends = await _publish(settings, workload)
    bare = []
    for _ in range(3):
        seconds, records = await bare_loop(settings, ends)
        if records != workload.published:
            raise RuntimeError(f"bare loop read {records} records, not {workload.published}")
        bare.append(records / seconds)
    ceiling = statistics.median(bare)
    rounds: dict[int, list[_Round]] = {1: [], 2: []}
    wrong = 0
    for k in range(ROUNDS):
        for n in (1, 2):
            r, off = await _round(settings, tansu, pool, workload, n, k)
            wrong += off
            rounds[n].append(r)
            print(
                f"    round {k + 1}, {n} member(s): {workload.records / r.seconds:,.0f}"
                f" records/s in total, per member {[f'{x / r.seconds:,.0f}' for x in r.records]},"
                f" CPU s {[f'{c:.2f}' for c in r.cpu_s]}, Postgres CPU s {r.postgres_cpu_s:.2f}",
                flush=True,
            )
    figures = [
        Figure(STAGE, "tansu: bare aiokafka loop (getmany + headers decoded)", ceiling, "records/s")
    ]
    one_total = 0.0
    for n in (1, 2):
        best = sorted(rounds[n], key=lambda r: r.seconds)[len(rounds[n]) // 2]  # the median
        total = workload.records / best.seconds
        per_core = workload.records / sum(best.cpu_s)
        per_core_pg = workload.records / (sum(best.cpu_s) + best.postgres_cpu_s)
        if n == 1:
            one_total = total
        figures.append(
            Figure(
                STAGE,
                f"{n} member(s): total into Postgres windows ({workload.records:,} records)",
                total,
                "records/s",
                ceiling=ceiling if n == 1 else 2 * one_total,
                ceiling_label="bare loop" if n == 1 else "2 × one member",
            )
        )
        for i, (recs, cpu) in enumerate(zip(best.records, best.cpu_s, strict=True)):
            figures.append(
                Figure(STAGE, f"{n} member(s): member {i + 1}", recs / best.seconds, "records/s")
            )
            figures.append(Figure(STAGE, f"{n} member(s): member {i + 1} CPU", cpu, "s"))
        figures.append(
            Figure(STAGE, f"{n} member(s): Postgres backends CPU", best.postgres_cpu_s, "s")
        )
        figures.append(
            Figure(
                STAGE,
                f"{n} member(s): records per member CPU second (per core)",
                per_core,
                "records/s",
            )
        )
        figures.append(
            Figure(
                STAGE,
                f"{n} member(s): records per CPU second, members + Postgres (per core)",
                per_core_pg,
                "records/s",
            )
        )
    figures.append(
        Figure(
            STAGE,
            f"windows off the ground truth ({2 * ROUNDS} rounds)",
            wrong,
            "windows",
            "0",
            passed=wrong == 0,
        )
    )
    return figures
