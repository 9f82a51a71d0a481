"""Shared steps of the billing and subscription tests: prices, customers, test clocks,
usage, and reading invoices and events back through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.api import post

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z; months of 31, 28, 31, 30 days follow
DAY = 86_400
JAN, FEB, MAR, APR, MAY = (T0, T0 + 31 * DAY, T0 + 59 * DAY, T0 + 90 * DAY, T0 + 120 * DAY)


async def price(
    client: httpx.AsyncClient,
    *,
    metered: bool = True,
    aggregate: str = "sum",
    currency: str = "EUR",
    interval: str = "month",
    product: str = "API access",
    **pricing: Any,
) -> dict[str, Any]:
    prod = await post(client, "/v1/products", {"name": product})
    recurring: dict[str, Any] = {
        "interval": interval,
        "usageType": "metered" if metered else "licensed",
    }
    if metered:
        recurring["aggregateUsage"] = aggregate
    body: dict[str, Any] = {"product": prod["id"], "currency": currency, "recurring": recurring}
    body.update(pricing or {"unitAmountDecimal": "0.2"})
    return await post(client, "/v1/prices", body)


async def customer(
    client: httpx.AsyncClient, payment_method: str = "pm_card_visa"
) -> dict[str, Any]:
    return await post(
        client,
        "/v1/customers",
        {"name": "Ada", "email": "ada@example.com", "paymentMethod": payment_method},
    )


async def clocked_subscription(
    client: httpx.AsyncClient,
    items: list[dict[str, Any]],
    *,
    at: int = T0,
    payment_method: str = "pm_card_visa",
    **extra: Any,
) -> dict[str, Any]:
    """A new customer subscribed on a new test clock frozen at ``at``."""
    cust = await customer(client, payment_method)
    clock = await post(client, "/v1/test_helpers/test_clocks", {"frozenTime": at})
    return await post(
        client,
        "/v1/subscriptions",
        {"customer": cust["id"], "items": items, "testClock": clock["id"], **extra},
    )


async def advance(client: httpx.AsyncClient, sub: dict[str, Any], to: int) -> dict[str, Any]:
    return await post(
        client, f"/v1/test_helpers/test_clocks/{sub['testClock']}/advance", {"frozenTime": to}
    )


async def usage(client: httpx.AsyncClient, item: str, quantity: int, ts: int) -> None:
    await post(
        client,
        "/v1/usage_records",
        {"subscriptionItem": item, "quantity": quantity, "timestamp": ts},
    )


async def invoices(client: httpx.AsyncClient, sub_id: str) -> list[dict[str, Any]]:
    """The subscription's invoices, oldest first."""
    response = await client.get("/v1/invoices", params={"subscription": sub_id, "limit": 100})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["data"]))


async def get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def events(client: httpx.AsyncClient, event_type: str) -> list[dict[str, Any]]:
    """This account's events of one type (delivery order is not guaranteed)."""
    response = await client.get("/v1/events", params={"type": event_type, "limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def lines_by_price(invoice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ln["price"]["id"]: ln for ln in invoice["lines"]["data"] if ln["price"]}
