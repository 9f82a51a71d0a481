"""Backpressure, not loss: with Kafka, Redis or Postgres away the API answers 503 with
``Retry-After`` and keeps nothing; it starts without them and recovers when they return;
in-flight work is bounded; shutdown drains what is in flight.

Dependencies go away for real: the dev broker process is frozen (SIGSTOP), Redis and
Postgres sit behind a TCP proxy that stops forwarding.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from aggregator.worker import Aggregator
from domain.accounts import EPOCH_POLL_S
from infra.devenv import free_port
from infra.settings import Settings
from tests.support.api import eventually, metered_price, subscribe
from tests.support.ingest import (
    PausableBroker,
    TcpProxy,
    api_instance,
    error_of,
    ledger,
    proxied_url,
    topic_messages,
    total_usage,
)
from tests.support.server import LiveServer
from vinr.api import create_app


@pytest.fixture(scope="module")
def frozen_broker() -> Iterator[PausableBroker]:
    broker = PausableBroker()
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
async def item(client: httpx.AsyncClient) -> str:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    item_id: str = sub["items"]["data"][0]["id"]
    return item_id


def _client(url: str, secret_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=url, timeout=15, headers={"Authorization": f"Bearer {secret_key}"}
    )


def _record(item: str, quantity: int = 1) -> dict[str, Any]:
    return {"subscriptionItem": item, "quantity": quantity, "timestamp": int(time.time())}


async def _readiness(c: httpx.AsyncClient) -> tuple[int, dict[str, str]]:
    response = await c.get("/readyz")
    checks: dict[str, str] = response.json()["checks"]
    return response.status_code, checks


def _unavailable(response: httpx.Response, dependency: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    error = error_of(response)
    assert error["type"] == "api_error" and dependency in error["message"]


async def test_a_frozen_broker_gets_503_and_the_key_stays_retryable(
    settings: Settings, secret_key: str, item: str, frozen_broker: PausableBroker
) -> None:
    async with (
        api_instance(settings, kafka_bootstrap=frozen_broker.address, publish_timeout_s=1.0) as api,
        _client(api.url, secret_key) as c,
    ):
        assert (await _readiness(c))[0] == 200
        body = _record(item)
        frozen_broker.pause()
        try:
            refused = await c.post(
                "/v1/usage_records", json=body, headers={"Idempotency-Key": "frozen"}
            )
            status, checks = await _readiness(c)
        finally:
            frozen_broker.resume()
        _unavailable(refused, "kafka")
        assert status == 503 and checks["kafka"].startswith("unavailable")
        assert checks["redis"] == "ok" and checks["postgres"] == "ok"

        async def recovered() -> httpx.Response | None:
            r = await c.post("/v1/usage_records", json=body, headers={"Idempotency-Key": "frozen"})
            return r if r.status_code == 200 else None

        # Nothing was kept for the refused request: its key is processed anew, not replayed.
        retried = await eventually(recovered)
        assert "Idempotent-Replayed" not in retried.headers
        assert (await _readiness(c))[0] == 200
    # A produce request that timed out may still land once the broker thaws (Kafka cannot
    # take it back): it carries the retry's derived id, so the ledger keeps one of them.
    on_topic = await topic_messages(frozen_broker.address, settings.usage_topic)
    assert on_topic and {m.id for m in on_topic} == {retried.json()["id"]}


async def test_kafka_away_at_start_up_then_back(
    settings: Settings,
    secret_key: str,
    item: str,
    client: httpx.AsyncClient,
    aggregator: Aggregator,
) -> None:
    host, port = (settings.kafka_bootstrap or "").rsplit(":", 1)
    proxy = TcpProxy(host, int(port))  # bootstrap goes through it; cut = unreachable
    async with (
        api_instance(settings, kafka_bootstrap=f"127.0.0.1:{proxy.port}") as api,
        _client(api.url, secret_key) as c,
    ):
        status, checks = await _readiness(c)
        assert status == 503 and checks["kafka"].startswith("unavailable")
        _unavailable(await c.post("/v1/usage_records", json=_record(item, 2)), "kafka")
        await proxy.restore()
        try:

            async def accepted() -> bool:
                r = await c.post(
                    "/v1/usage_records",
                    json=_record(item, 5),
                    headers={"Idempotency-Key": "after-start"},
                )
                return r.status_code == 200

            await eventually(accepted, timeout_s=20)
            assert (await _readiness(c))[0] == 200
        finally:
            await proxy.cut()
    await aggregator.drain()
    assert await total_usage(client, item) == 5


async def test_redis_going_away_gets_503_and_records_nothing(
    settings: Settings,
    secret_key: str,
    item: str,
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    aggregator: Aggregator,
) -> None:
    redis_url = settings.redis_url.get_secret_value()
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.restore()
    try:
        async with (
            api_instance(settings, redis_url=proxied_url(redis_url, proxy.port)) as api,
            _client(api.url, secret_key) as c,
        ):
            first = await c.post("/v1/usage_records", json=_record(item, 3))
            assert first.status_code == 200, first.text
            await proxy.cut()
            for key in ("gone-1", None):
                headers = {"Idempotency-Key": key} if key else {}
                _unavailable(
                    await c.post("/v1/usage_records", json=_record(item, 100), headers=headers),
                    "redis",
                )
            status, checks = await _readiness(c)
            assert status == 503 and checks["redis"].startswith("unavailable")
            await proxy.restore()

            async def back() -> bool:
                r = await c.post(
                    "/v1/usage_records",
                    json=_record(item, 4),
                    headers={"Idempotency-Key": "gone-1"},
                )
                return r.status_code == 200

            await eventually(back)
    finally:
        await proxy.cut()
    await aggregator.drain()
    assert await total_usage(client, item) == 7
    assert len(await ledger(pool, item)) == 2


async def test_postgres_away_at_start_up_and_later(
    settings: Settings,
    secret_key: str,
    item: str,
    client: httpx.AsyncClient,
    aggregator: Aggregator,
) -> None:
    db_url = settings.database_url.get_secret_value()
    target = urlsplit(db_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    try:
        async with (
            api_instance(settings, database_url=proxied_url(db_url, proxy.port)) as api,
            _client(api.url, secret_key) as c,
        ):
            # Started without Postgres: up, not ready, 503 for what needs it.
            status, checks = await _readiness(c)
            assert status == 503 and checks["postgres"].startswith("unavailable")
            _unavailable(await c.post("/v1/usage_records", json=_record(item, 50)), "postgres")
            _unavailable(await c.get("/v1/products"), "postgres")
            await proxy.restore()

            async def connected() -> bool:
                r = await c.post("/v1/usage_records", json=_record(item, 2))
                return r.status_code == 200

            await eventually(connected, timeout_s=20)
            # The key epoch's first successful read drops the key cache (what was cached
            # before it may predate a revocation): past it, the key is cached for good.
            await asyncio.sleep(4 * EPOCH_POLL_S)
            assert await connected()
            # Postgres away again: the hot path does not need it (key and item metadata
            # are cached), the control plane does.
            await proxy.cut()
            still = await c.post("/v1/usage_records", json=_record(item, 3))
            assert still.status_code == 200, still.text
            _unavailable(await c.get("/v1/products"), "postgres")
    finally:
        await proxy.cut()
    await aggregator.drain()
    assert await total_usage(client, item) == 2 + 2 + 3


async def _partial_request(
    port: int, secret_key: str, body: bytes
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Sends a usage request but its last body byte: it stays in flight until ``finish``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /v1/usage_records HTTP/1.1\r\nHost: x\r\n"
        + f"Authorization: Bearer {secret_key}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body[:-1]
    )
    await writer.drain()
    return reader, writer


async def _finish(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes
) -> tuple[int, bytes]:
    writer.write(body[-1:])
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    payload = await reader.readexactly(length)
    writer.close()
    return int(head[9:12]), payload


async def _until_inflight(count: int) -> None:
    """Until the newest API instance's in-flight gauge shows ``count`` requests."""
    for _ in range(200):
        if (REGISTRY.get_sample_value("vinr_ingest_inflight") or 0) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("requests did not get in flight")


async def test_in_flight_work_is_bounded(settings: Settings, secret_key: str, item: str) -> None:
    async with api_instance(settings, max_inflight_requests=2) as server:
        await _bounded(server, secret_key, item)


async def _bounded(server: LiveServer, secret_key: str, item: str) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    body = orjson.dumps(_record(item))
    held = [await _partial_request(port, secret_key, body) for _ in range(2)]
    await _until_inflight(2)
    async with _client(server.url, secret_key) as c:
        over = await c.post("/v1/usage_records", json=_record(item))
        assert over.status_code == 429
        assert over.headers["Retry-After"] == "1"
        assert error_of(over)["type"] == "rate_limit_error"
        assert error_of(over)["code"] == "too_many_requests_in_flight"
        for reader, writer in held:
            status, payload = await _finish(reader, writer, body)
            assert status == 200, payload
        assert (await c.post("/v1/usage_records", json=_record(item))).status_code == 200


async def test_shutdown_drains_requests_in_flight(
    settings: Settings,
    secret_key: str,
    item: str,
    client: httpx.AsyncClient,
    aggregator: Aggregator,
) -> None:
    app = create_app(settings)
    server = LiveServer(app, free_port())
    await server.__aenter__()
    port = int(server.url.rsplit(":", 1)[1])
    body = orjson.dumps(_record(item, 42))
    reader, writer = await _partial_request(port, secret_key, body)
    await _until_inflight(1)
    stopping = asyncio.create_task(server.__aexit__(None, None, None))

    async def refusing() -> bool:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return True
        w.close()
        return False

    await eventually(refusing)  # no new connections any more...
    status, payload = await _finish(reader, writer, body)
    assert status == 200, payload  # ...but the one in flight is answered
    await asyncio.wait_for(stopping, 10)
    await aggregator.drain()
    assert await total_usage(client, item) == 42
