"""Redis memory per accepted usage request: ``python -m bench redis``.

A private ``redis-server`` (Redis 7 defaults: ``hash-max-listpack-entries`` 128,
``hash-max-listpack-value`` 64; no persistence) on a free port, so ``INFO memory`` moves
with this stage's writes only. The same number of accepted single-record requests is
written twice, each into an empty server:

- the old format, the ceiling: one string key per request (``P|…`` then ``D|<digest>|<the
  JSON result>``, as before the compact keyspace), written with SET;
- the compact keyspace, through ``RedisIdempotencyStore`` itself: a claim and its
  settlement per request, coalesced as the API sends them (``CONCURRENCY`` at a time);
  and as many per-record keys of batches, each storing its record's id.

Figures: ``used_memory`` delta / requests, and ``MEMORY USAGE`` of every key written /
requests. A compact entry lives from its write until its time slice's hash expires: on
average 1.25 × the TTL, at most 1.5 × — so a day's traffic at a steady rate holds up to
1.5 × its entries; the target is on that peak figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import time
import uuid
from collections.abc import AsyncIterator

import orjson
from redis.asyncio import Redis

from bench.common import Figure
from domain.idempotency import RecordKey, RedisIdempotencyStore, body_digest
from domain.idempotency.codec import done_value
from infra import progress
from infra.devenv import free_port
from infra.ids import derived_id, new_id
from infra.scriptpipe import ScriptPipe
from ingest.results import dump_stored

__all__ = ["run"]

STAGE = "redis"
REQUESTS = 200_000
CONCURRENCY = 256  # claims in flight at once: the coalesced batches the API sends
TTL_S = 86_400
PEAK = 1.5  # entries held, at most, per entry of a TTL's traffic (time slices)
TARGET_B = 64
PREFIX = "vinrbench:"
RECORDS_PER_BATCH = 10


@contextlib.asynccontextmanager
async def _server() -> AsyncIterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not on PATH")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        stdout=asyncio.subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        r = Redis.from_url(url)
        for _ in range(100):
            with contextlib.suppress(OSError, ConnectionError, Exception):
                if await r.ping():
                    break
            await asyncio.sleep(0.05)
        await r.aclose()
        yield url
    finally:
        proc.terminate()
        await proc.wait()


def _names(n: int) -> list[str]:
    """Request key names as the API spells them: account, mode, a client key (a UUID)."""
    account = f"acct_{secrets.token_hex(12)}"
    return [f"{PREFIX}idem:usage:{account}:t:{uuid.uuid4()}" for _ in range(n)]


async def _used(r: Redis) -> int:
    info = await r.info("memory")
    return int(info["used_memory"])


async def _key_bytes(r: Redis, match: str) -> tuple[int, int]:
    """(Σ MEMORY USAGE, keys) of the keys matching ``match``."""
    total = keys = 0
    async for key in r.scan_iter(match=match, count=1000):
        total += int(await r.memory_usage(key, samples=0) or 0)
        keys += 1
    return total, keys


async def _old_format(r: Redis, names: list[str]) -> tuple[float, float]:
    await r.flushall()
    before = await _used(r)
    created = int(time.time())
    for start in range(0, len(names), 1000):
        async with r.pipeline(transaction=False) as pipe:
            for name in names[start : start + 1000]:
                digest = body_digest(name.encode())
                # the old payload: the id and the times, as JSON
                stored = orjson.dumps([derived_id("mbu", name, digest), created, created, {}])
                pipe.set(name, done_value(digest, stored), px=TTL_S * 1000)
            await pipe.execute()
    used = (await _used(r) - before) / len(names)
    total, _ = await _key_bytes(r, f"{PREFIX}idem:*")
    return used, total / len(names)


async def _compact(url: str, names: list[str]) -> tuple[float, float, int, int, float]:
    """(used_memory/request, MEMORY USAGE/request, hashes, hashes not listpack, Redis CPU
    µs per request)."""
    r = Redis.from_url(url)
    await r.flushall()
    pipe = ScriptPipe(url, timeout_s=10, connect_timeout_s=2)
    store = RedisIdempotencyStore(r, pipe, ttl_s=TTL_S, lease_s=10, namespace=f"{PREFIX}idem2:")
    meta = f"{PREFIX}item:acct:t:si"
    token = secrets.token_hex(6)
    created = int(time.time())
    stored = dump_stored("", created, created, {})

    async def one(i: int, name: str) -> None:
        digest = body_digest(name.encode())
        await store.claim(meta, name, digest, f"{token}{i:x}")
        store.complete_claim(
            name, digest, f"{token}{i:x}", stored=stored, records=[], created=created
        )

    try:
        await store.claim(meta, None, "0" * 32, token)  # the keyspace's descriptors exist
        before = await _used(r)
        cpu = await r.info("cpu")
        for start in range(0, len(names), CONCURRENCY):
            await asyncio.gather(
                *(one(start + i, n) for i, n in enumerate(names[start : start + CONCURRENCY]))
            )
        await store.drain()
        after_cpu = await r.info("cpu")
        used = (await _used(r) - before) / len(names)
        spent = sum(float(after_cpu[k]) - float(cpu[k]) for k in ("used_cpu_sys", "used_cpu_user"))
        total, _ = await _key_bytes(r, f"{PREFIX}idem2:*")
        hashes = not_listpack = 0
        async for key in r.scan_iter(match=f"{PREFIX}idem2:*:h:*", count=1000):
            hashes += 1
            if await r.object("ENCODING", key) != b"listpack":
                not_listpack += 1
        return used, total / len(names), hashes, not_listpack, spent / len(names) * 1e6
    finally:
        await pipe.close()
        await r.aclose()


async def _records(url: str, names: list[str]) -> float:
    """used_memory per per-record key of batches (``RECORDS_PER_BATCH`` keyed records each,
    no request key), each storing its record's id."""
    r = Redis.from_url(url)
    await r.flushall()
    pipe = ScriptPipe(url, timeout_s=10, connect_timeout_s=2)
    store = RedisIdempotencyStore(r, pipe, ttl_s=TTL_S, lease_s=10, namespace=f"{PREFIX}idem2:")
    meta = f"{PREFIX}item:acct:t:si"
    created = int(time.time())

    async def batch(j: int, chunk: list[str]) -> None:
        token = f"r{j:x}"
        keys = [RecordKey(n, body_digest(n.encode(), 8)) for n in chunk]
        await store.claim(meta, None, "0" * 32, token, keys)
        request_id = new_id("mbu")
        store.complete_claim(
            None,
            "0" * 32,
            token,
            stored=b"",
            records=[(k, f"{request_id}_{i}") for i, k in enumerate(keys)],
            created=created,
        )

    try:
        await store.claim(meta, None, "0" * 32, "warm")
        before = await _used(r)
        step = RECORDS_PER_BATCH * 16
        for start in range(0, len(names), step):
            chunk = names[start : start + step]
            await asyncio.gather(
                *(
                    batch(start + i, chunk[i : i + RECORDS_PER_BATCH])
                    for i in range(0, len(chunk), RECORDS_PER_BATCH)
                )
            )
        await store.drain()
        return (await _used(r) - before) / len(names)
    finally:
        await pipe.close()
        await r.aclose()


async def run(broker: str) -> list[Figure]:
    del broker  # Redis only
    names = _names(REQUESTS)
    async with _server() as url:
        r = Redis.from_url(url)
        try:
            async with progress.timed(f"  old format: {REQUESTS:,} keys", 10):
                old_used, old_usage = await _old_format(r, names)
        finally:
            await r.aclose()
        async with progress.timed(f"  compact: {REQUESTS:,} requests", 20):
            used, usage, hashes, not_listpack, cpu_us = await _compact(url, names)
        async with progress.timed(f"  per-record keys: {REQUESTS:,}", 20):
            per_record = await _records(url, names)
    print(
        f"  old format: {old_used:.0f} B/request (used_memory), {old_usage:.0f} B (MEMORY USAGE)"
        f"\n  compact: {used:.1f} B/request (used_memory), {usage:.1f} B (MEMORY USAGE),"
        f" {hashes:,} hashes, {not_listpack} not listpack, Redis CPU {cpu_us:.1f} µs/request",
        flush=True,
    )
    if not_listpack:
        raise RuntimeError(f"{not_listpack} compact hashes are not listpacks")
    return [
        Figure(
            STAGE,
            f"Redis bytes per accepted request, peak of a TTL's traffic (used_memory × {PEAK:g})",
            used * PEAK,
            "B",
            f"≤ {TARGET_B} B",
            ceiling=old_used,
            ceiling_label="B old format",
            passed=used * PEAK <= TARGET_B,
        ),
        Figure(STAGE, "Redis bytes per accepted request, as written (used_memory)", used, "B"),
        Figure(
            STAGE,
            "Redis bytes per accepted request (Σ MEMORY USAGE)",
            usage,
            "B",
            ceiling=old_usage,
            ceiling_label="B old format",
        ),
        Figure(STAGE, "Redis CPU per request, claim + settle (INFO cpu)", cpu_us, "µs"),
        Figure(
            STAGE,
            f"Redis bytes per per-record key, batches of {RECORDS_PER_BATCH} (used_memory)",
            per_record,
            "B",
        ),
    ]
