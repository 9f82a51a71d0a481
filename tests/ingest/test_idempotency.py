"""Idempotency on the ingest path, on real Redis, Kafka (dev broker) and Postgres: a record
is billed once across failed publishes, concurrent retries, lost Redis keys and expired
leases — checked where it counts, in the aggregator's ledger and the usage summaries."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from redis.asyncio import Redis

from aggregator.worker import Aggregator
from domain.idempotency import RedisIdempotencyStore
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings
from tests.support.api import metered_price, post, subscribe
from tests.support.ingest import (
    PausableBroker,
    account_of,
    api_instance,
    error_of,
    ledger,
    total_usage,
)


@pytest.fixture(scope="module")
def paused_broker() -> Iterator[PausableBroker]:
    broker = PausableBroker()
    broker.start()
    yield broker
    broker.stop()


async def _item(client: httpx.AsyncClient) -> str:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    item: str = sub["items"]["data"][0]["id"]
    return item


async def _ready(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=10) as c:
        for _ in range(200):
            if (await c.get("/readyz")).status_code == 200:
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the API instance did not become ready")


def _store(redis: Redis, settings: Settings) -> RedisIdempotencyStore:
    """A store reading the API's keyspace (its pipe never connects: only reads here)."""
    pipe = ScriptPipe(settings.redis_url.get_secret_value(), timeout_s=2, connect_timeout_s=1)
    return RedisIdempotencyStore(
        redis,
        pipe,
        ttl_s=settings.idempotency_ttl_s,
        lease_s=settings.idempotency_lease_s,
        namespace=settings.key("idem2", ""),
    )


def _record(item: str, quantity: int = 7) -> dict[str, Any]:
    return {"subscriptionItem": item, "quantity": quantity, "timestamp": int(time.time())}


async def test_a_retry_after_a_failed_publish_is_billed_once(
    client: httpx.AsyncClient,
    settings: Settings,
    secret_key: str,
    pool: asyncpg.Pool,
    aggregator: Aggregator,
    paused_broker: PausableBroker,
) -> None:
    item = await _item(client)
    body = _record(item, 11)
    async with api_instance(
        settings, kafka_bootstrap=paused_broker.address, publish_timeout_s=1.0
    ) as other:
        await _ready(other.url)
        async with httpx.AsyncClient(
            base_url=other.url, timeout=10, headers={"Authorization": f"Bearer {secret_key}"}
        ) as broken:
            paused_broker.pause()
            try:
                failed = await broken.post(
                    "/v1/usage_records", json=body, headers={"Idempotency-Key": "retry-me"}
                )
            finally:
                paused_broker.resume()
    assert failed.status_code == 503, failed.text
    assert failed.headers["Retry-After"] == "1"
    assert error_of(failed)["type"] == "api_error"
    # The key was released, not marked done: the retry is processed, not "replayed".
    retried = await client.post(
        "/v1/usage_records", json=body, headers={"Idempotency-Key": "retry-me"}
    )
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    again = await client.post(
        "/v1/usage_records", json=body, headers={"Idempotency-Key": "retry-me"}
    )
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == retried.content
    await aggregator.drain()
    rows = await ledger(pool, item)
    assert [r["id"] for r in rows] == [retried.json()["id"]]
    assert await total_usage(client, item) == 11


async def test_concurrent_requests_with_one_key_record_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    item = await _item(client)
    body = _record(item, 5)
    responses = await asyncio.gather(
        *(
            client.post("/v1/usage_records", json=body, headers={"Idempotency-Key": "burst"})
            for _ in range(20)
        )
    )
    fresh = [
        r for r in responses if r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    ]
    assert len(fresh) == 1, [r.status_code for r in responses]
    record_id = fresh[0].json()["id"]
    for r in responses:
        if r.status_code == 200:
            assert r.json()["id"] == record_id
        else:
            assert r.status_code == 409, r.text
            assert error_of(r)["type"] == "idempotency_error"
    await aggregator.drain()
    assert [r["id"] for r in await ledger(pool, item)] == [record_id]
    assert await total_usage(client, item) == 5


async def test_redis_losing_the_keys_still_records_once(
    client: httpx.AsyncClient,
    settings: Settings,
    secret_key: str,
    pool: asyncpg.Pool,
    redis: Redis,
    aggregator: Aggregator,
) -> None:
    """Redis is the fast path, not the source of truth: with the idempotency keyspace
    (and the item's cached metadata) flushed, the retry is published again with the same
    derived id, and the aggregator's ledger drops it."""
    item = await _item(client)
    body = _record(item, 3)
    first = await post(client, "/v1/usage_records", body, key="flushed")
    account = await account_of(pool, secret_key)
    flushed = [k async for k in redis.scan_iter(match=settings.key("idem2", "*"))]
    assert flushed  # the compact keyspace held the key
    await redis.delete(*flushed)
    assert await redis.delete(settings.key("item", account, "t", item)) == 1
    retry = await client.post(
        "/v1/usage_records", json=body, headers={"Idempotency-Key": "flushed"}
    )
    assert retry.status_code == 200, retry.text
    assert "Idempotent-Replayed" not in retry.headers  # Redis had forgotten it
    assert retry.json()["id"] == first["id"]
    await aggregator.drain()
    assert [r["id"] for r in await ledger(pool, item)] == [first["id"]]
    assert await total_usage(client, item) == 3


async def test_the_same_key_with_another_body_is_refused(client: httpx.AsyncClient) -> None:
    item = await _item(client)
    await post(client, "/v1/usage_records", _record(item, 1), key="reused")
    other = await client.post(
        "/v1/usage_records", json=_record(item, 2), headers={"Idempotency-Key": "reused"}
    )
    assert other.status_code == 400
    error = error_of(other)
    assert error["type"] == "idempotency_error" and error["param"] == "Idempotency-Key"
    batch = await client.post(
        "/v1/usage_records/batch",
        json={"subscriptionItem": item, "records": [{"quantity": 1}]},
        headers={"Idempotency-Key": "reused"},
    )
    assert batch.status_code == 400 and error_of(batch)["type"] == "idempotency_error"


async def test_a_replay_matches_the_request_not_its_spelling(client: httpx.AsyncClient) -> None:
    item = await _item(client)
    ts = int(time.time())
    first = await client.post(
        "/v1/usage_records",
        content=orjson.dumps({"subscriptionItem": item, "quantity": 4, "timestamp": ts}),
        headers={"Idempotency-Key": "spelling", "Content-Type": "application/json"},
    )
    respelled = (
        f'{{ "timestamp": {ts},  "action": "increment", "quantity": 4,'
        f' "subscriptionItem": "{item}" }}'
    ).encode()
    replay = await client.post(
        "/v1/usage_records",
        content=respelled,
        headers={"Idempotency-Key": "spelling", "Content-Type": "application/json"},
    )
    assert replay.status_code == 200, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == first.content


async def test_a_pending_key_becomes_retryable_when_its_lease_expires(
    client: httpx.AsyncClient,
    settings: Settings,
    secret_key: str,
    pool: asyncpg.Pool,
    redis: Redis,
    aggregator: Aggregator,
    paused_broker: PausableBroker,
) -> None:
    """An API instance stuck publishing (its broker frozen) holds the key pending; others
    get 409 until the lease runs out, then the retry goes through — and the stuck one,
    when it gives up, does not undo that."""
    item = await _item(client)
    body = _record(item, 9)
    key = f"lease-{uuid.uuid4().hex[:6]}"
    account = await account_of(pool, secret_key)
    redis_key = settings.key("idem", "usage", account, "t", key)
    store = _store(redis, settings)
    async with api_instance(
        settings,
        kafka_bootstrap=paused_broker.address,
        publish_timeout_s=4.0,
        close_settle_s=4.6,
        idempotency_lease_s=1.0,
    ) as stuck_api:
        await _ready(stuck_api.url)
        async with httpx.AsyncClient(
            base_url=stuck_api.url, timeout=10, headers={"Authorization": f"Bearer {secret_key}"}
        ) as stuck_client:
            paused_broker.pause()
            try:
                stuck = asyncio.create_task(
                    stuck_client.post(
                        "/v1/usage_records", json=body, headers={"Idempotency-Key": key}
                    )
                )
                for _ in range(100):
                    state = await store.usage_state(redis_key)
                    if state is not None:
                        break
                    await asyncio.sleep(0.02)
                assert state == "pending"
                busy = await client.post(
                    "/v1/usage_records", json=body, headers={"Idempotency-Key": key}
                )
                assert busy.status_code == 409, busy.text
                assert error_of(busy)["code"] == "idempotency_key_in_use"
                for _ in range(100):
                    if await store.usage_state(redis_key) is None:
                        break
                    await asyncio.sleep(0.05)
                through = await client.post(
                    "/v1/usage_records", json=body, headers={"Idempotency-Key": key}
                )
                assert through.status_code == 200, through.text
                gave_up = await stuck
            finally:
                paused_broker.resume()
    assert gave_up.status_code == 503
    replay = await client.post("/v1/usage_records", json=body, headers={"Idempotency-Key": key})
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["id"] == through.json()["id"]
    await aggregator.drain()
    assert [r["id"] for r in await ledger(pool, item)] == [through.json()["id"]]
    assert await total_usage(client, item) == 9
