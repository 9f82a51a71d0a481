"""The Python SDK's retries against the real server: every attempt of a call carries the
same ``Idempotency-Key``, so a retry after a lost answer is replayed, not counted again, and
a 503 (Kafka unreachable) is retried after its ``Retry-After``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest
from vinr_sdk import APIError, AsyncVinr

from aggregator.worker import Aggregator
from infra.devenv import free_port
from infra.settings import Settings
from tests.support.api import metered_price, subscribe
from tests.support.server import LiveServer
from vinr.api import create_app


@dataclass
class Seen:
    port: int
    key: str | None
    status: int
    replayed: str | None
    body: bytes


class Forwarding(httpx.AsyncBaseTransport):
    """A real HTTP transport that records every attempt, can send attempt ``n`` to the port
    ``route(n)`` chooses, and can lose the next ``drop`` answers after the server sent them
    (the client sees a reset connection)."""

    def __init__(self, route: Callable[[int], int] | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._route = route
        self.drop = 0
        self.seen: list[Seen] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._route is not None:
            url = request.url.copy_with(port=self._route(len(self.seen)))
            request = httpx.Request(
                request.method, url, headers=request.headers, content=request.content
            )
        response = await self._inner.handle_async_request(request)
        body = await response.aread()
        self.seen.append(
            Seen(
                request.url.port or 80,
                request.headers.get("idempotency-key"),
                response.status_code,
                response.headers.get("idempotent-replayed"),
                body,
            )
        )
        if self.drop > 0:
            self.drop -= 1
            await response.aclose()
            raise httpx.ReadError("connection reset after the server answered", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class Sleeps:
    def __init__(self) -> None:
        self.waited: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)


async def total_usage(vinr: AsyncVinr, item: str) -> int:
    summary = await vinr.usage_records.summaries(subscription_item=item)
    total: int = summary.data[0].total_usage
    return total


async def test_a_lost_answer_is_retried_with_the_same_key_and_counted_once(
    api: str, secret_key: str, client: httpx.AsyncClient, aggregator: Aggregator
) -> None:
    price = await metered_price(client)
    item = (await subscribe(client, price["id"]))["items"]["data"][0]["id"]
    transport = Forwarding()
    sleeps = Sleeps()
    async with AsyncVinr(
        secret_key, api_base=api, transport=transport, sleep=sleeps, max_retries=3
    ) as vinr:
        transport.drop = 2
        record = await vinr.usage_records.create(subscription_item=item, quantity=5)
        transport.drop = 1
        batch = await vinr.usage_records.create_batch(
            subscription_item=item,
            records=[{"quantity": 1}] * 10,
            idempotency_key="batch-from-my-queue-17",
        )
        await aggregator.drain()
        assert await total_usage(vinr, item) == 15, "each call counted once"

    calls = [transport.seen[:3], transport.seen[3:5]]
    assert len(transport.seen) == 6 and len(sleeps.waited) == 3
    assert transport.seen[5].key is None, "the summary GET carries no key"
    for attempts in calls:
        assert len({a.key for a in attempts}) == 1 and attempts[0].key
        assert [a.status for a in attempts] == [200] * len(attempts)
        assert [a.replayed for a in attempts] == [None] + ["true"] * (len(attempts) - 1)
        assert len({a.body for a in attempts}) == 1, "the replay is the first answer"
    assert calls[1][0].key == "batch-from-my-queue-17"
    assert record.id.startswith("mbu_") and batch.count == 10


@pytest.fixture
async def kafka_down_api(settings: Settings) -> AsyncIterator[str]:
    """An API instance on the same Postgres and Redis whose Kafka does not answer."""
    down = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    async with LiveServer(create_app(down), free_port()) as server:
        yield server.url


async def test_a_503_is_retried_after_retry_after_with_the_same_key(
    api: str,
    kafka_down_api: str,
    secret_key: str,
    client: httpx.AsyncClient,
    aggregator: Aggregator,
) -> None:
    price = await metered_price(client)
    item = (await subscribe(client, price["id"]))["items"]["data"][0]["id"]
    healthy, down = httpx.URL(api).port, httpx.URL(kafka_down_api).port
    assert healthy is not None and down is not None

    # Kafka "comes back" after two attempts: the third goes to the healthy instance.
    transport = Forwarding(route=lambda n: down if n < 2 else healthy)
    sleeps = Sleeps()
    async with AsyncVinr(
        secret_key, api_base=api, transport=transport, sleep=sleeps, max_retries=3
    ) as vinr:
        record = await vinr.usage_records.create(
            subscription_item=item, quantity=7, idempotency_key="usage-evt-42"
        )
        await aggregator.drain()
        assert await total_usage(vinr, item) == 7
    assert [(s.port, s.status) for s in transport.seen[:3]] == [
        (down, 503),
        (down, 503),
        (healthy, 200),
    ]
    assert {s.key for s in transport.seen[:3]} == {"usage-evt-42"}
    assert sleeps.waited == [1.0, 1.0], "Retry-After: 1 was honoured"
    assert record.quantity == 7

    # Still down: the retries are spent, all with one key, and the error says why.
    stuck = Forwarding(route=lambda n: down)
    async with AsyncVinr(
        secret_key, api_base=api, transport=stuck, sleep=Sleeps(), max_retries=2
    ) as vinr:
        with pytest.raises(APIError) as info:
            await vinr.usage_records.create(subscription_item=item, quantity=1)
    assert info.value.http_status == 503 and info.value.headers.get("retry-after") == "1"
    assert [s.status for s in stuck.seen] == [503] * 3
    assert len({s.key for s in stuck.seen}) == 1
