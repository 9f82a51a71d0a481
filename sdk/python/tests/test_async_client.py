"""The async client shares the sync one's behaviour; these pin the async paths."""

from __future__ import annotations

import httpx
import pytest
from vinr_sdk import AsyncVinr, IdempotencyError, RateLimitError, VinrObject

from ._mock import API_BASE, SECRET_KEY, Script, Sleeps, api_error, async_client, respond


async def test_idempotency_key_is_reused_across_retries() -> None:
    script, sleeps = Script(respond(503), respond(503), respond(200)), Sleeps()
    async with async_client(script, sleeps) as client:
        record = await client.usage_records.create(subscription_item="si_1", quantity=1)
    assert record.id == "obj_1"
    assert len(script.requests) == 3 and len(set(script.keys())) == 1
    assert len(sleeps.calls) == 2


async def test_retry_after_is_honoured() -> None:
    script = Script(api_error(429, "rate_limit_error", headers={"Retry-After": "2"}), respond())
    sleeps = Sleeps()
    async with async_client(script, sleeps) as client:
        await client.products.list()
    assert sleeps.calls == [2.0]


async def test_errors_are_raised_after_retries() -> None:
    script = Script(*[api_error(429, "rate_limit_error", "slow down")] * 3)
    async with async_client(script) as client:
        with pytest.raises(RateLimitError) as info:
            await client.products.create(name="x")
    assert len(script.requests) == 3 and info.value.http_status == 429


async def test_idempotency_error_is_mapped() -> None:
    script = Script(api_error(400, "idempotency_error", "different body"))
    async with async_client(script) as client:
        with pytest.raises(IdempotencyError) as info:
            await client.customers.create(name="x", idempotency_key="k1")
    assert info.value.http_status == 400 and script.keys() == ["k1"]


async def test_transport_errors_are_retried() -> None:
    script = Script(httpx.ConnectError("refused"), respond(200))
    async with async_client(script) as client:
        result = await client.test_helpers.subscriptions.advance_period("sub_1")
    assert isinstance(result, VinrObject)
    assert script.requests[-1].url.path == "/v1/test_helpers/subscriptions/sub_1/advance_period"


async def test_async_handlers_and_attribute_access() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return respond(200, {"id": "sub_1", "items": {"data": [{"id": "si_1"}]}})

    client = AsyncVinr(SECRET_KEY, api_base=API_BASE, transport=httpx.MockTransport(handler))
    try:
        sub = await client.subscriptions.retrieve("sub_1")
    finally:
        await client.aclose()
    assert sub.id == "sub_1" and sub["items"].data[0].id == "si_1"


async def test_close_alias_closes() -> None:
    client = async_client(Script())
    await client.close()
    with pytest.raises(RuntimeError):
        await client.products.list()
