"""A test clock advanced across several periods runs every boundary crossed, in order
(test clocks); the read side lists what it produced: usage summaries with their
invoice, invoices (filters, pagination), charges."""

from __future__ import annotations

import asyncpg
import httpx

from aggregator.worker import Aggregator
from domain.accounts import create_account
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import (
    APR,
    DAY,
    FEB,
    MAR,
    T0,
    advance,
    clocked_subscription,
    customer,
    get,
    invoices,
    lines_by_price,
    price,
    usage,
)


async def test_clock_advanced_across_three_months_yields_three_invoices_in_order(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    calls = await price(client, unitAmount=2)  # sum: January only
    storage = await price(client, aggregate="last_ever", unitAmount=5)
    seats = await price(client, metered=False, unitAmount=1000, product="Seats")
    sub = await clocked_subscription(
        client,
        [{"price": calls["id"]}, {"price": storage["id"]}, {"price": seats["id"], "quantity": 2}],
    )
    items = {i["price"]["id"]: i["id"] for i in sub["items"]["data"]}
    await usage(client, items[calls["id"]], 100, T0 + 60)
    await usage(client, items[storage["id"]], 7, T0 + 120)
    await aggregator.drain()
    clock = await advance(client, sub, APR + DAY)  # crosses FEB, MAR and APR
    assert clock["status"] == "advancing"
    await invoicer.tick()

    create, *cycles = await invoices(client, sub["id"])
    assert create["billingReason"] == "subscription_create"
    bounds = [(T0, FEB), (FEB, MAR), (MAR, APR)]
    assert [(i["periodStart"], i["periodEnd"]) for i in cycles] == bounds
    assert [i["created"] for i in cycles] == [FEB, MAR, APR]
    assert [i["billingReason"] for i in cycles] == ["subscription_cycle"] * 3
    for invoice, (start, end), used in zip(cycles, bounds, (100, 0, 0), strict=True):
        lines = lines_by_price(invoice)
        assert (lines[calls["id"]]["quantity"], lines[calls["id"]]["amount"]) == (used, 2 * used)
        assert lines[storage["id"]]["quantity"] == 7  # last_ever carries
        assert lines[calls["id"]]["period"] == {"start": start, "end": end}
        nxt = {FEB: MAR, MAR: APR, APR: APR + 30 * DAY}[end]
        assert lines[seats["id"]]["period"] == {"start": end, "end": nxt}
        assert invoice["status"] == "paid"
    assert [i["total"] for i in cycles] == [2235, 2035, 2035]  # seats 2000 in advance
    current = await get(client, f"/v1/subscriptions/{sub['id']}")
    assert (current["currentPeriodStart"], current["currentPeriodEnd"]) == (APR, APR + 30 * DAY)
    assert (await get(client, f"/v1/test_helpers/test_clocks/{sub['testClock']}"))[
        "status"
    ] == "ready"

    # Summaries: the running period first, then each closed one with its invoice.
    summary = await get(
        client, f"/v1/usage_records/summaries?subscriptionItem={items[calls['id']]}"
    )
    assert [(s["period"]["start"], s["totalUsage"], s["invoice"]) for s in summary["data"]] == [
        (APR, 0, None),
        (MAR, 0, cycles[2]["id"]),
        (FEB, 0, cycles[1]["id"]),
        (T0, 100, cycles[0]["id"]),
    ]
    limited = await get(
        client, f"/v1/usage_records/summaries?subscriptionItem={items[storage['id']]}&limit=2"
    )
    assert limited["hasMore"] is True
    assert [(s["period"]["start"], s["totalUsage"]) for s in limited["data"]] == [
        (APR, 7),
        (MAR, 7),
    ]


async def test_invoice_lists_filter_and_paginate(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    seats = await price(client, metered=False, unitAmount=1000, product="Seats")
    sub = await clocked_subscription(client, [{"price": seats["id"]}])
    other = await post(
        client,
        "/v1/subscriptions",
        {"customer": (await customer(client))["id"], "items": [{"price": seats["id"]}]},
    )
    await aggregator.drain()
    await advance(client, sub, MAR)
    await invoicer.tick()
    mine = await invoices(client, sub["id"])
    assert len(mine) == 3  # create, Feb, Mar

    page1 = await get(client, f"/v1/invoices?subscription={sub['id']}&limit=2")
    assert page1["hasMore"] is True and page1["url"] == "/v1/invoices"
    page2 = await get(
        client,
        f"/v1/invoices?subscription={sub['id']}&limit=2&startingAfter={page1['data'][-1]['id']}",
    )
    assert page2["hasMore"] is False
    assert [i["id"] for i in page1["data"] + page2["data"]] == [i["id"] for i in mine[::-1]]
    by_customer = await get(client, f"/v1/invoices?customer={sub['customer']}&limit=100")
    assert {i["id"] for i in by_customer["data"]} == {i["id"] for i in mine}
    everything = await get(client, "/v1/invoices?status=paid&limit=100")
    assert {i["subscription"] for i in everything["data"]} == {sub["id"], other["id"]}
    assert (await get(client, "/v1/invoices?status=draft"))["data"] == []
    bad = await client.get("/v1/invoices?status=settled")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "status"
    one = await get(client, f"/v1/invoices/{mine[1]['id']}")
    assert one == mine[1]
    assert one["lines"]["data"][0]["price"]["id"] == seats["id"]


async def test_invoices_and_charges_of_another_account_are_not_found(
    client: httpx.AsyncClient, api: str, pool: asyncpg.Pool
) -> None:
    seats = await price(client, metered=False, unitAmount=1000, product="Seats")
    sub = await clocked_subscription(client, [{"price": seats["id"]}])
    [invoice] = await invoices(client, sub["id"])
    async with pool.acquire() as conn:
        _, other_key, _ = await create_account(conn, "stranger")
    async with httpx.AsyncClient(
        base_url=api, timeout=30, headers={"Authorization": f"Bearer {other_key}"}
    ) as stranger:
        response = await stranger.get(f"/v1/invoices/{invoice['id']}")
        assert response.status_code == 404
        assert response.json()["error"]["param"] == "id"
        assert (await stranger.get("/v1/invoices")).json()["data"] == []
        assert (await stranger.get("/v1/charges")).json()["data"] == []
        paying = await stranger.post(f"/v1/invoices/{invoice['id']}/pay")
        assert paying.status_code == 404
    assert (await client.get("/v1/invoices/inv_nope")).status_code == 404
