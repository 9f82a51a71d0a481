"""Summaries for each aggregateUsage, through HTTP, on a test clock, against the
aggregation table of docs/api.md."""

from __future__ import annotations

import httpx
import pytest

from aggregator.worker import Aggregator
from invoicer.worker import Invoicer
from tests.support.api import metered_price, post, subscribe

T0 = 1_780_000_000  # a test clock's frozen time


async def _report(
    client: httpx.AsyncClient, item: str, records: list[tuple[int, int, str]]
) -> None:
    for i, (offset, quantity, action) in enumerate(records):
        await post(
            client,
            "/v1/usage_records",
            {
                "subscriptionItem": item,
                "quantity": quantity,
                "timestamp": T0 + offset,
                "action": action,
            },
            key=f"{item}-{i}",
        )


async def _total(client: httpx.AsyncClient, item: str, index: int = 0) -> int:
    response = await client.get("/v1/usage_records/summaries", params={"subscriptionItem": item})
    assert response.status_code == 200, response.text
    total: int = response.json()["data"][index]["totalUsage"]
    return total


STRIPE_EXAMPLE = [
    (10, 10, "increment"),
    (20, 20, "increment"),
    (30, 1, "increment"),
    (40, 5, "increment"),
]


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [("sum", 36), ("last_during_period", 5), ("last_ever", 5), ("max", 20)],
)
async def test_stripe_example(
    client: httpx.AsyncClient, aggregator: Aggregator, aggregate: str, expected: int
) -> None:
    price = await metered_price(client, aggregate=aggregate)
    sub = await subscribe(client, price["id"], clock=T0)
    item = sub["items"]["data"][0]["id"]
    await _report(client, item, STRIPE_EXAMPLE)
    await aggregator.drain()
    assert await _total(client, item) == expected


@pytest.mark.parametrize(
    ("aggregate", "expected"),
    [
        # map after the records: t10 → 7 (set replaced 10+4), t20 → 20, t30 → 3 (1, then set 3)
        ("sum", 30),
        ("last_during_period", 3),
        ("max", 20),
        ("last_ever", 3),
    ],
)
async def test_set_replaces_usage_at_its_timestamp(
    client: httpx.AsyncClient, aggregator: Aggregator, aggregate: str, expected: int
) -> None:
    price = await metered_price(client, aggregate=aggregate)
    sub = await subscribe(client, price["id"], clock=T0)
    item = sub["items"]["data"][0]["id"]
    await _report(
        client,
        item,
        [
            (10, 10, "increment"),
            (20, 20, "increment"),
            (10, 4, "increment"),
            (30, 1, "increment"),
            (10, 7, "set"),
            (30, 3, "set"),
        ],
    )
    await aggregator.drain()
    assert await _total(client, item) == expected


async def test_max_drops_when_a_set_lowers_the_peak(
    client: httpx.AsyncClient, aggregator: Aggregator
) -> None:
    price = await metered_price(client, aggregate="max")
    sub = await subscribe(client, price["id"], clock=T0)
    item = sub["items"]["data"][0]["id"]
    await _report(client, item, [(10, 50, "set"), (20, 30, "set")])
    await aggregator.drain()
    assert await _total(client, item) == 50
    await post(
        client,
        "/v1/usage_records",
        {"subscriptionItem": item, "quantity": 5, "timestamp": T0 + 10, "action": "set"},
    )
    await aggregator.drain()
    assert await _total(client, item) == 30


@pytest.mark.parametrize(
    ("aggregate", "carried"), [("last_ever", 5), ("last_during_period", 0), ("sum", 0), ("max", 0)]
)
async def test_only_last_ever_carries_into_the_next_period(
    client: httpx.AsyncClient,
    aggregator: Aggregator,
    invoicer: Invoicer,
    aggregate: str,
    carried: int,
) -> None:
    price = await metered_price(client, aggregate=aggregate)
    sub = await subscribe(client, price["id"], clock=T0)
    item = sub["items"]["data"][0]["id"]
    await _report(client, item, STRIPE_EXAMPLE)
    await aggregator.drain()
    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    await invoicer.tick()
    assert await _total(client, item, 0) == carried
    invoices = (await client.get("/v1/invoices", params={"subscription": sub["id"]})).json()
    assert [i["lines"]["data"][0]["quantity"] for i in invoices["data"]] == [
        {"sum": 36, "max": 20, "last_during_period": 5, "last_ever": 5}[aggregate]
    ]


async def test_backdated_and_future_records_are_rejected(
    client: httpx.AsyncClient, aggregator: Aggregator
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"], clock=T0)
    item = sub["items"]["data"][0]["id"]
    backdated = await client.post(
        "/v1/usage_records", json={"subscriptionItem": item, "quantity": 1, "timestamp": T0 - 1}
    )
    assert backdated.status_code == 400
    error = backdated.json()["error"]
    assert error["param"] == "timestamp"
    assert str(T0) in error["message"] and "before the current billing period" in error["message"]
    future = await client.post(
        "/v1/usage_records", json={"subscriptionItem": item, "quantity": 1, "timestamp": T0 + 301}
    )
    assert future.status_code == 400
    assert future.json()["error"]["param"] == "timestamp"
    assert "in the future" in future.json()["error"]["message"]
    batch = await client.post(
        "/v1/usage_records/batch",
        json={
            "subscriptionItem": item,
            "records": [{"quantity": 1, "timestamp": T0}, {"quantity": 1, "timestamp": T0 - 5}],
        },
    )
    assert batch.status_code == 400
    assert batch.json()["error"]["param"] == "records[1].timestamp"
    await aggregator.drain()
    assert await _total(client, item) == 0  # nothing from a refused request was kept


async def test_one_invoice_per_period(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"], clock=T0)
    item = sub["items"]["data"][0]["id"]
    await _report(client, item, STRIPE_EXAMPLE)
    await aggregator.drain()
    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    for _ in range(3):
        await invoicer.tick()
    invoices = (await client.get("/v1/invoices", params={"subscription": sub["id"]})).json()
    assert len(invoices["data"]) == 1
    assert invoices["data"][0]["total"] == 7  # 36 × 0.2 = 7.2 → 7
    assert invoices["data"][0]["periodStart"] == sub["currentPeriodStart"]
