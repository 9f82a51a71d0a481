"""Timestamp rules and item checks through HTTP, on test clocks."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from invoicer.worker import Invoicer
from tests.support.api import metered_price, post, subscribe
from tests.support.ingest import error_of, ledger, summaries

T0 = 1_790_000_000  # the test clocks' start


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _usage(client: httpx.AsyncClient, item: str, quantity: int, ts: int) -> httpx.Response:
    return await client.post(
        "/v1/usage_records", json={"subscriptionItem": item, "quantity": quantity, "timestamp": ts}
    )


async def _clocked(client: httpx.AsyncClient, aggregate: str = "sum") -> dict[str, object]:
    price = await metered_price(client, aggregate=aggregate)
    return await subscribe(client, price["id"], clock=T0)


async def test_backdated_and_future_records_name_the_boundary(client: httpx.AsyncClient) -> None:
    sub = await _clocked(client)
    item = sub["items"]["data"][0]["id"]  # type: ignore[index]
    start = int(sub["currentPeriodStart"])  # type: ignore[call-overload]
    backdated = await _usage(client, item, 1, start - 1)
    assert backdated.status_code == 400
    error = error_of(backdated)
    assert error["param"] == "timestamp" and error["code"] == "timestamp_before_period"
    assert str(start) in error["message"] and _iso(start) in error["message"]
    assert (await _usage(client, item, 1, T0 + 300)).status_code == 200
    future = await _usage(client, item, 1, T0 + 301)
    assert future.status_code == 400
    assert error_of(future)["code"] == "timestamp_in_future"
    assert error_of(future)["param"] == "timestamp"


async def test_late_usage_for_sum_until_the_previous_invoice_is_finalized(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    sub = await _clocked(client)
    capped = await _clocked(client, "max")
    item = sub["items"]["data"][0]["id"]  # type: ignore[index]
    capped_item = capped["items"]["data"][0]["id"]  # type: ignore[index]
    start, end = int(sub["currentPeriodStart"]), int(sub["currentPeriodEnd"])  # type: ignore[call-overload]
    assert (await _usage(client, item, 10, start + 100)).status_code == 200
    # The period ends; the invoicer has not run yet, so its invoice does not exist.
    now = end + 120
    for s in (sub, capped):
        await post(
            client, f"/v1/test_helpers/test_clocks/{s['testClock']}/advance", {"frozenTime": now}
        )
    late = await _usage(client, item, 5, end - 10)
    assert late.status_code == 200, late.text
    current = await _usage(client, item, 2, end + 60)
    assert current.status_code == 200, current.text
    refused = await _usage(client, capped_item, 5, end - 10)
    assert refused.status_code == 400
    assert "aggregateUsage 'sum'" in error_of(refused)["message"]
    assert str(end) in error_of(refused)["message"]

    await aggregator.drain()
    periods = {p["period"]["start"]: p["totalUsage"] for p in await summaries(client, item)}
    assert periods == {start: 15, end: 2}
    assert {r["period_start"] for r in await ledger(pool, item)} == {start, end}

    assert await invoicer.tick() >= 1  # closes and (test clock: no grace) finalizes
    invoices = (await client.get("/v1/invoices", params={"subscription": sub["id"]})).json()
    assert [i["lines"]["data"][0]["quantity"] for i in invoices["data"]] == [15]
    assert invoices["data"][0]["status"] != "draft"
    too_late = await _usage(client, item, 5, end - 5)
    assert too_late.status_code == 400
    assert error_of(too_late)["code"] == "timestamp_before_period"
    assert "finalized" in error_of(too_late)["message"]
    assert (await _usage(client, item, 1, now)).status_code == 200


async def test_items_that_cannot_take_usage(client: httpx.AsyncClient) -> None:
    unknown = await _usage(client, "si_doesnotexist", 1, T0)
    assert unknown.status_code == 404
    assert error_of(unknown)["param"] == "subscriptionItem"

    sub = await _clocked(client)
    item = sub["items"]["data"][0]["id"]  # type: ignore[index]
    deleted = await client.delete(f"/v1/subscriptions/{sub['id']}")
    assert deleted.status_code == 200, deleted.text
    canceled = await _usage(client, item, 1, T0)
    assert canceled.status_code == 400
    assert error_of(canceled)["code"] == "subscription_canceled"

    product = await post(client, "/v1/products", {"name": "Seats"})
    licensed = await post(
        client,
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "EUR",
            "unitAmount": 500,
            "recurring": {"interval": "month", "usageType": "licensed"},
        },
    )
    seat_sub = await subscribe(client, licensed["id"])
    seats = await client.post(
        "/v1/usage_records",
        json={"subscriptionItem": seat_sub["items"]["data"][0]["id"], "quantity": 1},
    )
    assert seats.status_code == 400
    assert error_of(seats)["code"] == "price_not_metered"


@pytest.mark.parametrize("aggregate", ["last_during_period", "last_ever"])
async def test_no_late_usage_for_last(client: httpx.AsyncClient, aggregate: str) -> None:
    sub = await _clocked(client, aggregate)
    item = sub["items"]["data"][0]["id"]  # type: ignore[index]
    end = int(sub["currentPeriodEnd"])  # type: ignore[call-overload]
    await post(
        client, f"/v1/test_helpers/test_clocks/{sub['testClock']}/advance", {"frozenTime": end + 60}
    )
    late = await _usage(client, item, 1, end - 1)
    assert late.status_code == 400
    assert error_of(late)["code"] == "timestamp_before_period"
    assert (await _usage(client, item, 1, end + 30)).status_code == 200
