"""The idempotency store on real Redis: the scripts and the Python codec read and write the
same values, claims answer every ``ClaimState`` / ``RecordState``, and the Idempotency-Key
rule is the same on the usage path, the control plane and in the OpenAPI document."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from domain.idempotency import (
    MAX_KEY_LENGTH,
    ClaimState,
    RecordKey,
    RecordState,
    RedisIdempotencyStore,
    body_digest,
)
from domain.idempotency.codec import decode_value, done_value, pending_value
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings
from tests.support.api import metered_price, subscribe


@pytest.fixture
async def store(redis: Redis, settings: Settings) -> AsyncIterator[RedisIdempotencyStore]:
    pipe = ScriptPipe(settings.redis_url.get_secret_value(), timeout_s=2, connect_timeout_s=1)
    namespace = settings.key("idem2", uuid.uuid4().hex[:8], "")
    yield RedisIdempotencyStore(redis, pipe, ttl_s=60, lease_s=10, namespace=namespace)
    await pipe.close()


def _key(settings: Settings, what: str) -> str:
    return settings.key("idem", "test", what, uuid.uuid4().hex)


async def test_begin_reads_values_written_in_python(
    store: RedisIdempotencyStore, redis: Redis, settings: Settings
) -> None:
    digest = body_digest(b"body")
    done, pending = _key(settings, "done"), _key(settings, "pending")
    await redis.set(done, done_value(digest, b'200\x00{"a": "x|y"}'))
    await redis.set(pending, pending_value(digest, "t1"))
    replay = await store.begin(done, digest, "t2")
    assert (replay.state, replay.stored) == (ClaimState.DONE, b'200\x00{"a": "x|y"}')
    assert (await store.begin(done, body_digest(b"other"), "t2")).state is ClaimState.MISMATCH
    assert (await store.begin(pending, digest, "t2")).state is ClaimState.INFLIGHT
    assert (await store.begin(pending, body_digest(b"other"), "t2")).state is ClaimState.MISMATCH


async def test_values_written_by_the_scripts_decode_in_python(
    store: RedisIdempotencyStore, redis: Redis, settings: Settings
) -> None:
    digest, key = body_digest(b"body"), _key(settings, "api")
    begun = await store.begin(key, digest, "tok")
    assert (begun.state, begun.stored) == (ClaimState.NEW, b"")
    value = decode_value(await redis.get(key))
    assert (value.pending, value.digest, value.rest) == (True, digest, b"tok")
    assert not await store.complete(key, digest, "other-token", b"no")
    assert await store.complete(key, digest, "tok", b"201\x00a|b")
    value = decode_value(await redis.get(key))
    assert (value.pending, value.digest, value.rest) == (False, digest, b"201\x00a|b")
    await store.release(key, digest, "tok")  # done: not pending any more, left alone
    assert await redis.get(key) is not None


async def test_release_frees_only_the_owners_pending_key(
    store: RedisIdempotencyStore, redis: Redis, settings: Settings
) -> None:
    digest, key = body_digest(b"body"), _key(settings, "api")
    await store.begin(key, digest, "tok")
    await store.release(key, digest, "someone-else")
    assert await redis.get(key) is not None
    await store.release(key, digest, "tok")
    assert await redis.get(key) is None


async def test_usage_claims_honour_old_format_keys(
    store: RedisIdempotencyStore, redis: Redis, settings: Settings
) -> None:
    meta = _key(settings, "meta")
    await redis.hset(meta, "d", b"metadata")
    fresh, done, other, pending = (RecordKey(_key(settings, "rec"), f"{i:016x}") for i in range(4))
    await redis.set(done.key, done_value(done.digest, b"mbu_before_3"))
    await redis.set(other.key, done_value("f" * 16, b"mbu_other_0"))
    await redis.set(pending.key, pending_value(pending.digest, "t0"))
    request = _key(settings, "usage")
    digest = body_digest(b"batch")

    blocked = await store.claim(meta, request, digest, "t1", [fresh, done, other, pending])
    assert blocked.state is ClaimState.RECORDS and blocked.meta == b"metadata"
    assert blocked.records == [
        RecordState.NEW,
        RecordState.DONE + "mbu_before_3",
        RecordState.MISMATCH,
        RecordState.PENDING,
    ]
    assert await redis.get(request) is None and await redis.get(fresh.key) is None

    claim = await store.claim(meta, request, digest, "t1", [fresh, done])
    assert claim.state is ClaimState.NEW
    assert claim.records == [RecordState.NEW, RecordState.DONE + "mbu_before_3"]
    assert await store.usage_state(request) == "pending"
    assert await store.usage_state(fresh.key) == "pending"
    assert await redis.get(request) is None  # nothing is written in the old format

    again = await store.claim(meta, request, digest, "t2", [fresh, done])
    assert again.state is ClaimState.INFLIGHT and again.records == []

    store.complete_claim(
        request,
        digest,
        "t1",
        stored=b"stored|1",
        records=[(fresh, "mbu_x_0")],
        created=int(time.time()),
    )
    await store.drain()
    await redis.delete(request)  # the old-format key expired; the compact one holds
    replay = await store.claim(meta, request, digest, "t3", [fresh, done])
    assert (replay.state, replay.stored) == (ClaimState.DONE, b"stored|1")
    mismatch = await store.claim(meta, request, body_digest(b"another batch"), "t3")
    assert mismatch.state is ClaimState.MISMATCH


async def test_a_released_usage_claim_is_free_again(
    store: RedisIdempotencyStore, redis: Redis, settings: Settings
) -> None:
    meta, request = _key(settings, "meta"), _key(settings, "usage")
    record = RecordKey(_key(settings, "rec"), "0" * 16)
    digest = body_digest(b"single")
    assert (await store.claim(meta, request, digest, "t1", [record])).state is ClaimState.NEW
    await store.release_claim(request, digest, "t1", [record])
    assert await store.usage_state(request) is None and await store.usage_state(record.key) is None
    assert (await store.claim(meta, request, digest, "t2", [record])).state is ClaimState.NEW


async def test_the_key_rule_is_the_same_on_every_path(client: httpx.AsyncClient) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    usage = {"subscriptionItem": sub["items"]["data"][0]["id"], "quantity": 1}
    too_long = "k" * (MAX_KEY_LENGTH + 1)
    refusals = [
        await client.post("/v1/usage_records", json=usage, headers={"Idempotency-Key": too_long}),
        await client.post("/v1/customers", json={}, headers={"Idempotency-Key": too_long}),
    ]
    for refused in refusals:
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["param"] == "Idempotency-Key"
        assert error["message"] == "Idempotency-Key must be 1 to 255 characters"
    longest = "k" * MAX_KEY_LENGTH
    ok = await client.post("/v1/usage_records", json=usage, headers={"Idempotency-Key": longest})
    assert ok.status_code == 200, ok.text
    schema = (await client.get("/openapi.json")).json()
    header = schema["paths"]["/v1/usage_records"]["post"]["parameters"][0]
    assert header["name"] == "Idempotency-Key" and header["schema"]["maxLength"] == MAX_KEY_LENGTH
