"""Builders for test fixtures through the public API."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

# Where a path parameter of the API takes its id from: the kind of object (tests that
# seed one object of each kind name them so).
PATH_KINDS = {
    "product_id": "product",
    "price_id": "price",
    "customer_id": "customer",
    "pm_id": "payment_method",
    "sub_id": "subscription",
    "clock_id": "clock",
    "invoice_id": "invoice",
    "event_id": "event",
    "endpoint_id": "endpoint",
    "key_id": "api_key",
    "meter_id": "meter",
    "alert_id": "alert",
}


async def post(
    client: httpx.AsyncClient,
    path: str,
    body: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    status: int = 200,
) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    response = await client.post(path, json=body or {}, headers=headers)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


async def metered_price(
    client: httpx.AsyncClient, *, aggregate: str = "sum", interval: str = "month", **pricing: Any
) -> dict[str, Any]:
    product = await post(client, "/v1/products", {"name": "API access"})
    body: dict[str, Any] = {
        "product": product["id"],
        "currency": "EUR",
        "billingScheme": "usage",
        "recurring": {"interval": interval, "usageType": "metered", "aggregateUsage": aggregate},
    }
    body.update(pricing or {"unitAmountDecimal": "0.2"})
    return await post(client, "/v1/prices", body)


async def subscribe(
    client: httpx.AsyncClient,
    price_id: str,
    *,
    clock: int | None = None,
    payment_method: str = "pm_card_visa",
    **extra: Any,
) -> dict[str, Any]:
    customer = await post(
        client,
        "/v1/customers",
        {"name": "Ada", "email": "ada@example.com", "paymentMethod": payment_method},
    )
    body: dict[str, Any] = {"customer": customer["id"], "items": [{"price": price_id}]}
    if clock is not None:
        test_clock = await post(client, "/v1/test_helpers/test_clocks", {"frozenTime": clock})
        body["testClock"] = test_clock["id"]
    body.update(extra)
    return await post(client, "/v1/subscriptions", body)


async def eventually(check: Callable[[], Awaitable[Any]], timeout_s: float = 15.0) -> Any:
    """Poll ``check`` until it returns a truthy value (for work done by running roles)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
