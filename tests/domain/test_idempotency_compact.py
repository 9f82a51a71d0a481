"""The compact usage keyspace on real Redis: every guarantee for the whole TTL — replay,
in flight, another body, per-record keys — its end at the TTL and at the lease, slices
rolling over, hashes that stay listpacks under Redis 7's defaults, and the move from the
old one-key-per-key format."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from redis.asyncio import Redis

from domain.idempotency import ClaimState, RecordKey, RecordState, RedisIdempotencyStore
from domain.idempotency.codec import done_value
from domain.idempotency.compact import FILL, ROLLOUT_S, inline_stored
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings
from ingest.results import dump_stored, load_stored

Make = Callable[..., RedisIdempotencyStore]


@pytest.fixture
async def make(redis: Redis, settings: Settings) -> AsyncIterator[Make]:
    """Stores on fresh namespaces of this run's prefix (``ns`` to share one)."""
    pipes: list[ScriptPipe] = []

    def make(
        ttl_s: int = 60, lease_s: float = 10, floor_bits: int = 4, ns: str | None = None
    ) -> RedisIdempotencyStore:
        pipe = ScriptPipe(settings.redis_url.get_secret_value(), timeout_s=5, connect_timeout_s=2)
        pipes.append(pipe)
        namespace = ns or settings.key("idem2", uuid.uuid4().hex[:8], "")
        return RedisIdempotencyStore(
            redis, pipe, ttl_s=ttl_s, lease_s=lease_s, namespace=namespace, floor_bits=floor_bits
        )

    yield make
    for pipe in pipes:
        await pipe.close()


def _meta(settings: Settings) -> str:
    return settings.key("item", "test", uuid.uuid4().hex)


def _name(settings: Settings) -> str:
    return settings.key("idem", "usage", "acct_test", "t", uuid.uuid4().hex)


async def _redis_now(redis: Redis) -> float:
    seconds, micros = await redis.time()
    return seconds + micros / 1e6


async def _sleep_until(redis: Redis, at: float) -> None:
    """Until Redis's clock reads ``at`` (a few ms after)."""
    await asyncio.sleep(max(0.0, at - await _redis_now(redis)) + 0.02)
    assert await _redis_now(redis) >= at


async def _done(
    store: RedisIdempotencyStore, name: str, digest: str, created: int, records: list[RecordKey]
) -> None:
    store.complete_claim(
        name,
        digest,
        "t1",
        stored=dump_stored("mbu_ignored", created, created, {}),
        records=[(r, f"mbu_first_{i}") for i, r in enumerate(records)],
        created=created,
    )
    await store.drain()


async def test_every_answer_of_a_request_key(make: Make, settings: Settings) -> None:
    store, meta, name = make(), _meta(settings), _name(settings)
    first = await store.claim(meta, name, "a" * 32, "t1")
    assert first.state is ClaimState.NEW
    assert (await store.claim(meta, name, "a" * 32, "t2")).state is ClaimState.INFLIGHT
    assert (await store.claim(meta, name, "b" * 32, "t2")).state is ClaimState.MISMATCH
    created = int(time.time())
    await _done(store, name, "a" * 32, created, [])
    replay = await store.claim(meta, name, "a" * 32, "t3")
    assert replay.state is ClaimState.DONE
    assert load_stored(replay.stored, "mbu_derived") == ("mbu_derived", created, created, {})
    assert (await store.claim(meta, name, "b" * 32, "t3")).state is ClaimState.MISMATCH


async def test_per_record_keys_and_long_results(make: Make, settings: Settings) -> None:
    store, meta, name = make(), _meta(settings), _name(settings)
    recs = [RecordKey(_name(settings), f"{i:016x}") for i in range(3)]
    assert (await store.claim(meta, name, "a" * 32, "t1", recs[:2])).state is ClaimState.NEW
    created = int(time.time())
    long = dump_stored("mbu_req", created, created - 5, {1: "mbu_before_1"})
    store.complete_claim(
        name, "a" * 32, "t1", stored=long, records=[(recs[0], "mbu_req_0")], created=created
    )
    await store.release_claim(None, "a" * 32, "t1", [recs[1]])  # refused: freed
    other = await store.claim(meta, _name(settings), "c" * 32, "t2", recs)
    assert other.state is ClaimState.NEW
    assert other.records == [RecordState.DONE + "mbu_req_0", RecordState.NEW, RecordState.NEW]
    blocked = await store.claim(
        meta, _name(settings), "d" * 32, "t3", [RecordKey(recs[1].key, "f" * 16), recs[2]]
    )
    assert blocked.state is ClaimState.RECORDS
    assert blocked.records == [RecordState.MISMATCH, RecordState.PENDING]
    replay = await store.claim(meta, name, "a" * 32, "t4", recs[:1])
    assert replay.state is ClaimState.DONE and replay.stored == long


async def test_a_done_key_lives_for_the_ttl_from_its_creation(
    make: Make, settings: Settings, redis: Redis
) -> None:
    store, meta = make(ttl_s=600), _meta(settings)
    now = int(await _redis_now(redis))
    live, gone = _name(settings), _name(settings)
    record = RecordKey(_name(settings), "0" * 16)
    for name, created, recs in ((live, now - 590, [record]), (gone, now - 601, [])):
        assert (await store.claim(meta, name, "a" * 32, "t1", recs)).state is ClaimState.NEW
        await _done(store, name, "a" * 32, created, recs)
    assert (await store.claim(meta, live, "a" * 32, "t2")).state is ClaimState.DONE
    assert (await store.claim(meta, gone, "b" * 32, "t2")).state is ClaimState.NEW
    rec = await store.claim(meta, None, "c" * 32, "t3", [record])
    assert rec.records == [RecordState.DONE + "mbu_first_0"]


async def test_entries_outlive_the_slice_they_were_written_in(
    make: Make, settings: Settings, redis: Redis
) -> None:
    """A 4 s TTL: slices of 2 s. A key done in one slice still answers after the next
    slice began, and not once its TTL has passed."""
    store, meta, name = make(ttl_s=4), _meta(settings), _name(settings)
    assert (await store.claim(meta, name, "a" * 32, "t1")).state is ClaimState.NEW
    written = await _redis_now(redis)
    await _done(store, name, "a" * 32, int(written), [])
    await _sleep_until(redis, (int(written) // 2 + 1) * 2)  # the next slice
    assert (await store.claim(meta, name, "a" * 32, "t2")).state is ClaimState.DONE
    assert (await store.claim(meta, name, "b" * 32, "t2")).state is ClaimState.MISMATCH
    await _sleep_until(redis, int(written) + 4)
    assert (await store.claim(meta, name, "b" * 32, "t3")).state is ClaimState.NEW


async def test_a_pending_key_is_free_when_its_lease_ends(make: Make, settings: Settings) -> None:
    store, meta, name = make(lease_s=0.3), _meta(settings), _name(settings)
    assert (await store.claim(meta, name, "a" * 32, "t1")).state is ClaimState.NEW
    assert await store.usage_state(name) == "pending"
    await asyncio.sleep(0.4)
    assert await store.usage_state(name) is None
    assert (await store.claim(meta, name, "a" * 32, "t2")).state is ClaimState.NEW
    # the first owner settling late does not undo the second's claim
    store.complete_claim(name, "a" * 32, "t1", stored=b"D\0\0\0\1", records=[], created=1)
    await store.drain()
    assert (await store.claim(meta, name, "a" * 32, "t3")).state is ClaimState.INFLIGHT


async def test_hashes_stay_listpacks_as_traffic_grows(
    make: Make, settings: Settings, redis: Redis
) -> None:
    """One bucket to start with: past ``FILL`` entries a generation with 4x the buckets
    takes the new keys, so no hash passes Redis 7's default of 128 entries."""
    ns = settings.key("idem2", uuid.uuid4().hex[:8], "")
    store, meta = make(floor_bits=0, ns=ns), _meta(settings)
    for _ in range(40):
        claims = [store.claim(meta, _name(settings), "a" * 32, "t") for _ in range(16)]
        await asyncio.gather(*claims)
    hashes = [k async for k in redis.scan_iter(match=ns + "*:h:*")]
    sizes = [await redis.hlen(k) for k in hashes]  # each holds its seal (field "") too
    assert sum(sizes) - len(hashes) == 640 and max(sizes) <= 2 * FILL and len(hashes) > 4
    for k in hashes:
        assert await redis.object("ENCODING", k) == b"listpack"
        assert await redis.hexists(k, "") and await redis.ttl(k) > 0  # expired once, whole
        assert max(len(v) for v in (await redis.hgetall(k)).values()) <= 64


async def test_old_format_keys_are_read_until_they_can_have_expired(
    make: Make, settings: Settings, redis: Redis
) -> None:
    ns = settings.key("idem2", uuid.uuid4().hex[:8], "")
    store, meta, name = make(ttl_s=60, ns=ns), _meta(settings), _name(settings)
    await redis.set(name, done_value("a" * 32, b'["mbu_old",1,1,{}]'))
    old = await store.claim(meta, name, "a" * 32, "t1")
    assert (old.state, old.stored) == (ClaimState.DONE, b'["mbu_old",1,1,{}]')
    assert (await store.claim(meta, name, "b" * 32, "t1")).state is ClaimState.MISMATCH
    # the compact keyspace began longer ago than a rollout and the TTL: no old key can be live
    began = int(await _redis_now(redis)) - ROLLOUT_S - 200
    await redis.hset(ns + "30:d", "since", began)
    await store.claim(meta, _name(settings), "c" * 32, "t2")
    assert (await store.claim(meta, name, "b" * 32, "t3")).state is ClaimState.NEW


def test_compact_payloads_fall_back_when_times_do_not_fit() -> None:
    assert inline_stored(5, 5) == b"D\0\0\0\5" and inline_stored(-1, 5) is None
    frozen = dump_stored("mbu_x", 5, 9, {})  # a test clock's now differs from created
    assert len(frozen) == 9 and load_stored(frozen, "mbu_y") == ("mbu_y", 5, 9, {})
    long = dump_stored("mbu_x", 5, -3, {})
    assert long[:1] == b"[" and load_stored(long, "mbu_y") == ("mbu_x", 5, -3, {})


async def test_a_replay_of_times_holding_nul_bytes(make: Make, settings: Settings) -> None:
    """The compact payload is binary: a time whose bytes include 0 replays whole."""
    store, meta = make(ttl_s=600), _meta(settings)
    created = int(time.time()) & ~0xFF  # its lowest byte is 0
    for now in (created, created + 0x100):  # the second payload holds `now` too
        name = _name(settings)
        assert (await store.claim(meta, name, "a" * 32, "t1")).state is ClaimState.NEW
        store.complete_claim(
            name,
            "a" * 32,
            "t1",
            stored=dump_stored("", created, now, {}),
            records=[],
            created=created,
        )
        await store.drain()
        replay = await store.claim(
            meta, name, "a" * 32, "t2", [RecordKey(_name(settings), "0" * 16)]
        )
        assert replay.state is ClaimState.DONE and replay.records == []
        assert load_stored(replay.stored, "mbu_d") == ("mbu_d", created, now, {})
