"""The fuzzed API: one instance on a thread of its own (hypothesis and schemathesis send
synchronous requests), an account's sandbox key, and a few objects of every kind so list
and lookup answers carry real objects to check against the documented schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from domain.accounts import create_account
from domain.ratelimit.store import set_overrides
from infra.db import create_pool
from infra.settings import Settings
from tests.support.fuzz import Target
from tests.support.server import ThreadedApi


async def _account(s: Settings) -> str:
    pool = await create_pool(s, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            account, key, _ = await create_account(conn, f"fuzz-{uuid.uuid4().hex[:6]}")
            # The fuzzers send thousands of control-plane requests a minute with one key:
            # the account is given the budget for it, as an operator would.
            await set_overrides(conn, account, {"control_rate": 100_000, "control_burst": 100_000})
    finally:
        await pool.close()
    return key


def _seed(client: httpx.Client) -> dict[str, str]:
    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        out: dict[str, Any] = response.json()
        return out

    endpoint = post(  # first: every event below gets a delivery to it
        "/v1/webhook_endpoints",
        {"url": "http://127.0.0.1:9/hook", "enabledEvents": ["*"], "description": "d"},
    )
    product = post("/v1/products", {"name": "fuzzed", "metadata": {"k": "v"}})
    metered = post(
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "eur",
            "billingScheme": "usage",
            "unitAmountDecimal": "0.2",
            "recurring": {"interval": "month", "usageType": "metered"},
        },
    )
    licensed = post(
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "eur",
            "billingScheme": "tiered",
            "tiersMode": "graduated",
            "tiers": [{"upTo": 10, "unitAmount": 100, "flatAmount": 5}, {"upTo": "inf"}],
            "recurring": {"interval": "month"},
        },
    )
    customer = post("/v1/customers", {"name": "Ada", "paymentMethod": "pm_card_visa"})
    clock = post("/v1/test_helpers/test_clocks", {"frozenTime": 1_750_000_000, "name": "c"})
    subscription = post(
        "/v1/subscriptions",
        {
            "customer": customer["id"],
            "items": [{"price": metered["id"]}, {"price": licensed["id"], "quantity": 3}],
            "testClock": clock["id"],
        },
    )
    item = subscription["items"]["data"][0]["id"]
    usage = client.post("/v1/usage_records", json={"subscriptionItem": item, "quantity": 7})
    assert usage.status_code == 200, usage.text
    producer = post("/v1/api_keys", {"name": "producer", "restricted": True})
    meter = post(
        "/v1/billing/meters",
        {
            "displayName": "fuzzed",
            "eventName": "fuzzed_requests",
            "defaultAggregation": {"formula": "sum"},
        },
    )
    alert = post(
        "/v1/billing/alerts",
        {
            "title": "fuzzed",
            "alertType": "usage_threshold",
            "usageThreshold": {"meter": meter["id"], "gte": 10, "recurrence": "one_time"},
            "filter": {"customer": customer["id"]},
        },
    )
    invoices = client.get("/v1/invoices").json()["data"]
    events = client.get("/v1/events").json()["data"]
    assert invoices and events
    return {
        "product": product["id"],
        "price": metered["id"],
        "customer": customer["id"],
        "payment_method": customer["defaultPaymentMethod"],
        "subscription": subscription["id"],
        "item": item,
        "clock": clock["id"],
        "endpoint": endpoint["id"],
        "invoice": invoices[0]["id"],
        "event": events[0]["id"],
        "api_key": producer["id"],
        "meter": meter["id"],
        "alert": alert["id"],
    }


@pytest.fixture(scope="package")
def target(settings: Settings) -> Iterator[Target]:
    own = Settings(**(settings.model_dump() | {"usage_topic": f"{settings.usage_topic}.fuzz"}))
    api = ThreadedApi(own)
    with api as url:
        key = api.run(_account(own))
        with httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            objects = _seed(client)
        yield Target(api, url, key, objects)
