"""Ingest benchmark: ``python -m bench ingest``.

A real ``vinr api`` process (uvicorn + httptools + uvloop, as in production) on a free port
of an isolated environment, driven by a load generator in a separate process
(``bench/_ingest_load.py``). The ceiling is a bare ASGI echo (``bench/_ingest_echo.py``)
served by the same stack and driven by the same generator in the same run.

Figures: single-record requests/s (closed loop, 64 connections like the echo;
again with 256, where coalescing has more to work with), p50/p99 latency at a fixed
open-loop rate of 5,000 requests/s (latency counted from the scheduled send time), records/s
in batches of 1000, the ratio of the single-record rate to the echo's, and the bytes each
accepted request's idempotency entry takes in Redis (``MEMORY USAGE`` of the keyspace the
stage wrote over its entries; the ``redis`` stage measures it on a private server).
Every request carries a fresh ``Idempotency-Key``, as the SDKs send. The API runs with per-key rate
limits on; one key carries the whole load, so its account's usage limit is raised above
what the machine can send (``bench.common.BENCH_RATE``) and no request is refused.

The per-key rate limiter's own cost is measured apart, in this process, against the same
Redis: an admit from leased tokens (the synchronous path most requests take), and the CPU
per admitted request at the default usage limit, leases from Redis included.

Every process — load generator, API, echo, Redis, Postgres and the dev broker — shares
the machine's cores, so the figures are what one box does, not what the API alone does.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

from bench.common import Figure, bench_env, metered_fixture, serve_process
from domain.ratelimit import RateLimiter
from domain.ratelimit.rules import Limit, lease_size
from domain.tenant import Tenant
from infra import progress
from infra.db import create_pool
from infra.devenv import free_port, isolated_settings
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings

__all__ = ["run"]

STAGE = "ingest"
CONNECTIONS = 64
WIDE_CONNECTIONS = 256  # more concurrency: bigger coalesced batches
BATCH_CONNECTIONS = 8
BATCH_SIZE = 1000
RATE = 5_000
DURATION_S = 5.0
WARMUP_S = 1.5


async def _load(spec: dict[str, Any], what: str) -> dict[str, Any]:
    """One load run of the generator process; a bar fills over its length on a terminal."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench._ingest_load",
        orjson.dumps(spec).decode(),
        stdout=asyncio.subprocess.PIPE,
    )
    async with progress.timed(f"  load: {what}", spec["warmup_s"] + spec["duration_s"]):
        out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode})")
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return result


def _spec(
    port: int,
    path: str,
    body: bytes,
    key: str,
    *,
    connections: int = CONNECTIONS,
    rate: float | None = None,
    prefix: str | None = None,
) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "path": path,
        "body": body.decode(),
        "headers": {"Authorization": f"Bearer {key}"},
        "connections": connections,
        "duration_s": DURATION_S,
        "warmup_s": WARMUP_S,
        "rate": rate,
        "key_prefix": prefix,
    }


def _ok(result: dict[str, Any], what: str) -> None:
    bad = {k: v for k, v in result["statuses"].items() if k != "200"}
    print(
        f"  {what}: {result['rps']:,.0f} req/s, p50 {result['p50_ms']:.1f} ms,"
        f" p99 {result['p99_ms']:.1f} ms{f', non-200: {bad}' if bad else ''}",
        flush=True,
    )
    if bad:
        raise RuntimeError(f"{what}: responses other than 200: {bad}")


LIMITER_CALLS = 1_000_000
LIMITER_REPEATS = 5


async def _limiter_cost(settings: Settings) -> tuple[float, float, float]:
    """(ns per admit from leased tokens, µs of CPU per admitted request at the default usage
    limit with its leases, µs of CPU per lease): the best of a few runs, each on a fresh
    key."""
    pipe = ScriptPipe(settings.redis_url.get_secret_value(), timeout_s=5, connect_timeout_s=2)
    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        # A limit this high leases 10 million tokens at once: the timed loop never leaves
        # the synchronous path.
        roomy = RateLimiter(
            settings.model_copy(update={"usage_rate_limit": 10**9, "usage_rate_burst": 10**9}),
            lambda: pipe,
            lambda: pool,
        )
        sync_ns = float("inf")
        for _ in range(LIMITER_REPEATS):
            tenant = Tenant("acct_bench", False, f"key_{uuid.uuid4().hex[:24]}")
            await roomy.usage.acquire(tenant)
            take, key = roomy.usage.take, tenant.key_id
            began = time.perf_counter()
            for _ in range(LIMITER_CALLS):
                take(key)
            sync_ns = min(sync_ns, (time.perf_counter() - began) / LIMITER_CALLS * 1e9)
            if not take(key):
                raise RuntimeError("the timed admits left the synchronous path")
        default = RateLimiter(settings, lambda: pipe, lambda: pool)
        limit = Limit(settings.usage_rate_limit, settings.usage_rate_burst)
        admits = settings.usage_rate_burst  # what a fresh key may take at once
        leases = -(-admits // lease_size(limit))
        per_request_us = per_lease_us = float("inf")
        for _ in range(LIMITER_REPEATS):
            tenant = Tenant("acct_bench", False, f"key_{uuid.uuid4().hex[:24]}")
            usage = default.usage
            cpu = time.process_time()
            for _ in range(admits):
                if not usage.take(tenant.key_id):
                    await usage.acquire(tenant)
            spent = time.process_time() - cpu
            per_request_us = min(per_request_us, spent / admits * 1e6)
            cpu = time.process_time()
            for _ in range(leases):
                await default.lease(default.usage.plane, tenant.key_id, limit)
            per_lease_us = min(per_lease_us, (time.process_time() - cpu) / leases * 1e6)
        return sync_ns, per_request_us, per_lease_us
    finally:
        await pipe.close()
        await pool.close()


async def _idempotency_bytes(settings: Settings) -> tuple[int, int]:
    """(Σ MEMORY USAGE of the compact idempotency keyspace, entries in its hashes): what
    the API's requests of this stage left in Redis, read from Redis itself."""
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    total = entries = 0
    try:
        async for key in redis.scan_iter(match=settings.key("idem2", "*"), count=1000):
            total += int(await redis.memory_usage(key, samples=0) or 0)
            if b":h:" in key:  # every hash holds its seal (field ""), not an entry
                entries += int(await redis.hlen(key)) - int(await redis.hexists(key, ""))
    finally:
        await redis.aclose()
    return total, entries


async def run(broker: str) -> list[Figure]:
    figures: list[Figure] = []
    async with isolated_settings(broker, label="bench") as settings:
        env = bench_env(settings)
        api_port, echo_port = free_port(), free_port()
        run_id = uuid.uuid4().hex[:6]
        async with serve_process(
            ["-m", "vinr.cli", "api", "--port", str(api_port)], env, api_port, "/readyz"
        ) as api:
            key, item, start = await metered_fixture(api, settings)
            single = orjson.dumps({"subscriptionItem": item, "quantity": 1})
            batch = orjson.dumps(
                {
                    "subscriptionItem": item,
                    "records": [
                        {"quantity": 1, "timestamp": start + i % 60} for i in range(BATCH_SIZE)
                    ],
                }
            )
            async with serve_process(
                ["-m", "bench._ingest_echo", str(echo_port)], env, echo_port, "/"
            ) as _echo:
                what = "bare ASGI echo, closed loop"
                echo = await _load(_spec(echo_port, "/v1/usage_records", single, key), what)
                _ok(echo, what)
            # The fixed-rate run comes before the saturating ones, whose aftermath (a few
            # seconds of catching up in the broker, Redis and the collector) is not the
            # steady state at 5,000/s that the latency target is about.
            spec = _spec(
                api_port,
                "/v1/usage_records",
                single,
                key,
                rate=RATE,
                connections=128,
                prefix=f"o{run_id}",
            )
            cpu_before = api.cpu_s()
            fixed = await _load(spec, f"single record, open loop at {RATE:,}/s")
            # Sent at a fixed rate over warm-up and measurement alike: CPU per request is
            # far steadier than throughput on a machine shared with the load generator.
            cpu_per_request_us = (
                (api.cpu_s() - cpu_before) / (RATE * (spec["duration_s"] + spec["warmup_s"])) * 1e6
            )
            _ok(fixed, f"single record, open loop at {RATE:,}/s")
            cpu_before = api.cpu_s()
            closed = await _load(
                _spec(api_port, "/v1/usage_records", single, key, prefix=f"c{run_id}"),
                "single record, closed loop",
            )
            # Warm-up included, at about the measured rate.
            saturated_cpu_us = (
                (api.cpu_s() - cpu_before) / (closed["rps"] * (DURATION_S + WARMUP_S)) * 1e6
            )
            _ok(closed, "single record, closed loop")
            wide = await _load(
                _spec(
                    api_port,
                    "/v1/usage_records",
                    single,
                    key,
                    connections=WIDE_CONNECTIONS,
                    prefix=f"w{run_id}",
                ),
                f"single record, closed loop, {WIDE_CONNECTIONS} connections",
            )
            _ok(wide, f"single record, closed loop, {WIDE_CONNECTIONS} connections")
            batches = await _load(
                _spec(
                    api_port,
                    "/v1/usage_records/batch",
                    batch,
                    key,
                    connections=BATCH_CONNECTIONS,
                    prefix=f"b{run_id}",
                ),
                f"batches of {BATCH_SIZE}, closed loop",
            )
            _ok(batches, f"batches of {BATCH_SIZE}, closed loop")
        stored_b, entries = await _idempotency_bytes(settings)
        print(
            f"  idempotency keyspace: {entries:,} entries, {stored_b / max(entries, 1):.1f} B"
            " each (Σ MEMORY USAGE)",
            flush=True,
        )
        sync_ns, per_request_us, per_lease_us = await _limiter_cost(settings)
        print(
            f"  rate limiter: {sync_ns:,.0f} ns per admit from leased tokens;"
            f" {per_request_us:.2f} µs CPU per request with leases; {per_lease_us:.1f} µs"
            " CPU per lease",
            flush=True,
        )
    figures.append(
        Figure(
            STAGE,
            f"single record, closed loop ({CONNECTIONS} conns)",
            closed["rps"],
            "req/s",
            "≥ 10,000 and ≥ 0.35 × echo",
            ceiling=echo["rps"],
            ceiling_label="req/s bare echo",
            passed=closed["rps"] >= 10_000 and closed["rps"] >= 0.35 * echo["rps"],
        )
    )
    figures.append(
        Figure(
            STAGE, f"single record, closed loop ({WIDE_CONNECTIONS} conns)", wide["rps"], "req/s"
        )
    )
    figures.append(
        Figure(STAGE, f"p50 latency at {RATE:,} req/s (open loop)", fixed["p50_ms"], "ms")
    )
    figures.append(
        Figure(
            STAGE,
            f"p99 latency at {RATE:,} req/s (open loop)",
            fixed["p99_ms"],
            "ms",
            "≤ 25 ms",
            passed=fixed["p99_ms"] <= 25 and fixed["rps"] >= 0.95 * RATE,
        )
    )
    figures.append(Figure(STAGE, f"achieved rate in the {RATE:,}/s run", fixed["rps"], "req/s"))
    figures.append(
        Figure(
            STAGE,
            f"API process CPU per single-record request at {RATE:,} req/s",
            cpu_per_request_us,
            "µs",
        )
    )
    figures.append(
        Figure(
            STAGE,
            f"API process CPU per single-record request, closed loop ({CONNECTIONS} conns)",
            saturated_cpu_us,
            "µs",
        )
    )
    figures.append(
        Figure(
            STAGE,
            f"batches of {BATCH_SIZE} ({BATCH_CONNECTIONS} conns)",
            batches["rps"] * BATCH_SIZE,
            "records/s",
            "≥ 250,000",
            passed=batches["rps"] * BATCH_SIZE >= 250_000,
        )
    )
    figures.append(
        Figure(
            STAGE,
            "Redis bytes per accepted request's idempotency entry (Σ MEMORY USAGE / entries)",
            stored_b / max(entries, 1),
            "B",
            "≤ 64 B",
            passed=stored_b / max(entries, 1) <= 64,
        )
    )
    figures.append(
        Figure(STAGE, "rate limiter: admit from leased tokens (sync path)", sync_ns, "ns")
    )
    figures.append(
        Figure(
            STAGE,
            "rate limiter: CPU per request at the default usage limit, leases included",
            per_request_us,
            "µs",
            "≤ 3 µs",
            passed=per_request_us <= 3,
        )
    )
    figures.append(
        Figure(STAGE, "rate limiter: CPU per lease from Redis (client side)", per_lease_us, "µs")
    )
    return figures
