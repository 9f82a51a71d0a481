"""Subscription changes: a metered price changed mid-period splits the usage
at the change, a licensed quantity change is prorated, cancel at period end or now (with a
final invoice for the usage so far), and the first invoice of licensed items."""

from __future__ import annotations

import httpx

from aggregator.worker import Aggregator
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import (
    DAY,
    FEB,
    MAR,
    T0,
    advance,
    clocked_subscription,
    events,
    get,
    invoices,
    lines_by_price,
    price,
    usage,
)

CHANGE = T0 + 10 * DAY


async def test_metered_price_change_bills_usage_before_at_old_and_after_at_new_price(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    old = await price(client, unitAmount=100)
    new = await price(client, unitAmount=40)
    sub = await clocked_subscription(client, [{"price": old["id"]}])
    item = sub["items"]["data"][0]["id"]
    await usage(client, item, 7, T0 + 60)
    await aggregator.drain()
    await advance(client, sub, CHANGE)
    changed = await post(
        client, f"/v1/subscriptions/{sub['id']}", {"items": [{"id": item, "price": new["id"]}]}
    )
    assert changed["items"]["data"][0]["price"]["id"] == new["id"]
    assert changed["items"]["data"][0]["id"] == item
    await usage(client, item, 5, CHANGE + 60)  # after the change: new price
    await usage(client, item, 2, CHANGE - DAY)  # reported late, happened before: old
    await aggregator.drain()
    summary = await get(client, f"/v1/usage_records/summaries?subscriptionItem={item}")
    assert summary["data"][0]["totalUsage"] == 14
    await advance(client, sub, FEB)
    await invoicer.tick()

    [invoice] = await invoices(client, sub["id"])
    lines = lines_by_price(invoice)
    assert (lines[old["id"]]["quantity"], lines[old["id"]]["amount"]) == (9, 900)
    assert lines[old["id"]]["period"] == {"start": T0, "end": CHANGE}
    assert (lines[new["id"]]["quantity"], lines[new["id"]]["amount"]) == (5, 200)
    assert lines[new["id"]]["period"] == {"start": CHANGE, "end": FEB}
    assert {ln["subscriptionItem"] for ln in invoice["lines"]["data"]} == {item}
    assert (invoice["total"], invoice["status"]) == (1100, "paid")

    # The next period is billed at the new price only.
    await usage(client, item, 3, FEB + 60)
    await aggregator.drain()
    await advance(client, sub, MAR)
    await invoicer.tick()
    february = (await invoices(client, sub["id"]))[1]
    assert [
        (ln["price"]["id"], ln["quantity"], ln["amount"]) for ln in february["lines"]["data"]
    ] == [(new["id"], 3, 120)]


async def test_price_change_between_aggregations_splits_max_per_segment(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    old = await price(client, aggregate="max", unitAmount=10)
    new = await price(client, aggregate="max", unitAmount=1)
    sub = await clocked_subscription(client, [{"price": old["id"]}])
    item = sub["items"]["data"][0]["id"]
    for quantity, ts in ((30, T0 + 10), (50, T0 + 20)):
        await usage(client, item, quantity, ts)
    await advance(client, sub, CHANGE)
    await post(
        client, f"/v1/subscriptions/{sub['id']}", {"items": [{"id": item, "price": new["id"]}]}
    )
    await usage(client, item, 20, CHANGE + 5)
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()
    [invoice] = await invoices(client, sub["id"])
    lines = lines_by_price(invoice)
    assert (lines[old["id"]]["quantity"], lines[old["id"]]["amount"]) == (50, 500)
    assert (lines[new["id"]]["quantity"], lines[new["id"]]["amount"]) == (20, 20)


async def test_first_invoice_bills_licensed_items_at_once(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    seats = await price(client, metered=False, unitAmount=1000, product="Seats")
    api = await price(client, unitAmount=1)
    sub = await clocked_subscription(
        client, [{"price": seats["id"], "quantity": 3}, {"price": api["id"]}]
    )
    assert sub["status"] == "active"
    [first] = await invoices(client, sub["id"])
    assert first["billingReason"] == "subscription_create"
    assert (first["status"], first["total"], first["amountPaid"]) == ("paid", 3000, 3000)
    assert [(ln["price"]["id"], ln["quantity"], ln["period"]) for ln in first["lines"]["data"]] == [
        (seats["id"], 3, {"start": T0, "end": FEB})
    ]
    [charge] = (await get(client, f"/v1/charges?invoice={first['id']}"))["data"]
    assert (charge["status"], charge["amount"], charge["created"]) == ("succeeded", 3000, T0)

    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()
    cycle = (await invoices(client, sub["id"]))[1]
    assert cycle["billingReason"] == "subscription_cycle"
    lines = lines_by_price(cycle)
    assert lines[seats["id"]]["period"] == {"start": FEB, "end": MAR}  # in advance
    assert lines[api["id"]]["period"] == {"start": T0, "end": FEB}  # in arrears


async def test_first_invoice_declined_makes_the_subscription_past_due(
    client: httpx.AsyncClient,
) -> None:
    seats = await price(client, metered=False, unitAmount=1000, product="Seats")
    sub = await clocked_subscription(
        client, [{"price": seats["id"], "quantity": 2}], payment_method="pm_card_chargeDeclined"
    )
    assert sub["status"] == "past_due"
    [first] = await invoices(client, sub["id"])
    assert (first["status"], first["attemptCount"]) == ("open", 1)
    assert first["nextPaymentAttempt"] == T0 + 3 * DAY
    assert [e["data"]["id"] for e in await events(client, "invoice.payment_failed")] == [
        first["id"]
    ]


async def test_licensed_quantity_change_is_prorated_on_the_next_invoice(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    seats = await price(client, metered=False, unitAmount=3100, product="Seats")
    sub = await clocked_subscription(client, [{"price": seats["id"], "quantity": 2}])
    item = sub["items"]["data"][0]["id"]
    await advance(client, sub, T0 + 21 * DAY)  # 10 of January's 31 days remain
    changed = await post(
        client, f"/v1/subscriptions/{sub['id']}", {"items": [{"id": item, "quantity": 5}]}
    )
    assert changed["items"]["data"][0]["quantity"] == 5
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()

    _, cycle = await invoices(client, sub["id"])
    rows = [
        (ln["type"], ln["quantity"], ln["amount"], ln["proration"], ln["period"])
        for ln in cycle["lines"]["data"]
    ]
    remaining = {"start": T0 + 21 * DAY, "end": FEB}
    assert rows == [
        ("subscription", 5, 15500, False, {"start": FEB, "end": MAR}),
        ("invoiceitem", 2, -2000, True, remaining),  # unused: 2 × 31.00 × 10/31
        ("invoiceitem", 5, 5000, True, remaining),  # remaining: 5 × 31.00 × 10/31
    ]
    assert cycle["lines"]["data"][1]["description"].startswith("Unused time on 2 × Seats")
    assert cycle["lines"]["data"][2]["description"].startswith("Remaining time on 5 × Seats")
    assert (cycle["total"], cycle["status"]) == (18500, "paid")


async def test_a_credit_larger_than_the_invoice_carries_to_the_next_one(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    seats = await price(client, metered=False, unitAmount=3100, product="Seats")
    sub = await clocked_subscription(client, [{"price": seats["id"], "quantity": 10}])
    item = sub["items"]["data"][0]["id"]
    await advance(client, sub, T0 + 11 * DAY)  # 20 of 31 days remain
    await post(client, f"/v1/subscriptions/{sub['id']}", {"items": [{"id": item, "quantity": 1}]})
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()
    # 1 × 3100 next month − 10 × 3100 × 20/31 + 1 × 3100 × 20/31 = 3100 − 20000 + 2000
    _, cycle = await invoices(client, sub["id"])
    assert (cycle["total"], cycle["status"], cycle["amountPaid"]) == (0, "paid", 0)
    assert cycle["lines"]["data"][-1]["description"] == "Credit carried to the next invoice"
    assert cycle["lines"]["data"][-1]["amount"] == 14900
    assert (await get(client, f"/v1/charges?invoice={cycle['id']}"))["data"] == []

    await advance(client, sub, MAR)
    await invoicer.tick()
    march = (await invoices(client, sub["id"]))[2]
    # 3100 of the credit used, the other 11800 carried again
    assert [ln["amount"] for ln in march["lines"]["data"]] == [3100, -14900, 11800]
    assert march["total"] == 0
    assert march["lines"]["data"][1]["description"] == "Credit carried over from " + cycle["id"]


async def test_no_proration_when_asked_for_none(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    seats = await price(client, metered=False, unitAmount=1000, product="Seats")
    sub = await clocked_subscription(client, [{"price": seats["id"], "quantity": 2}])
    await advance(client, sub, T0 + 15 * DAY)
    await post(
        client,
        f"/v1/subscriptions/{sub['id']}",
        {
            "items": [{"id": sub["items"]["data"][0]["id"], "quantity": 4}],
            "prorationBehavior": "none",
        },
    )
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()
    _, cycle = await invoices(client, sub["id"])
    assert [(ln["quantity"], ln["amount"]) for ln in cycle["lines"]["data"]] == [(4, 4000)]


async def test_item_changes_are_validated(client: httpx.AsyncClient) -> None:
    metered = await price(client, unitAmount=1)
    licensed = await price(client, metered=False, unitAmount=100)
    yearly = await price(client, unitAmount=1, interval="year")
    sub = await clocked_subscription(client, [{"price": metered["id"]}])
    item = sub["items"]["data"][0]["id"]
    cases = [
        ({"id": "si_nope", "price": metered["id"]}, "items[0].id", "has no item"),
        ({"id": item, "quantity": 3}, "items[0].quantity", "take no quantity"),
        ({"id": item, "price": licensed["id"]}, "items[0].price", "must be metered too"),
        ({"id": item, "price": yearly["id"]}, "items[0].price", "every 1 year"),
        ({"id": item, "price": "price_nope"}, "items[0].price", "no such price"),
        ({"quantity": 1}, "items[0].price", "needs a price"),
    ]
    for change, param, words in cases:
        response = await client.post(f"/v1/subscriptions/{sub['id']}", json={"items": [change]})
        assert response.status_code == 400, (change, response.text)
        error = response.json()["error"]
        assert error["param"] == param and words in error["message"], error
    unchanged = await get(client, f"/v1/subscriptions/{sub['id']}")
    assert [i["price"]["id"] for i in unchanged["items"]["data"]] == [metered["id"]]


async def test_an_item_added_mid_period_is_billed_from_then_on(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    api = await price(client, unitAmount=1)
    seats = await price(client, metered=False, unitAmount=3100, product="Seats")
    sub = await clocked_subscription(client, [{"price": api["id"]}])
    await advance(client, sub, T0 + 21 * DAY)
    changed = await post(
        client, f"/v1/subscriptions/{sub['id']}", {"items": [{"price": seats["id"], "quantity": 1}]}
    )
    assert [i["quantity"] for i in changed["items"]["data"]] == [None, 1]
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()
    [cycle] = await invoices(client, sub["id"])
    assert sorted((ln["type"], ln["amount"]) for ln in cycle["lines"]["data"]) == [
        ("invoiceitem", 1000),
        ("subscription", 0),
        ("subscription", 3100),
    ]


async def test_cancel_at_period_end_bills_the_last_period_and_nothing_ahead(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    api = await price(client, unitAmount=10)
    seats = await price(client, metered=False, unitAmount=500, product="Seats")
    sub = await clocked_subscription(client, [{"price": api["id"]}, {"price": seats["id"]}])
    api_item = sub["items"]["data"][0]["id"]
    await usage(client, api_item, 12, T0 + 60)
    updated = await post(client, f"/v1/subscriptions/{sub['id']}", {"cancelAtPeriodEnd": True})
    assert (updated["cancelAtPeriodEnd"], updated["status"]) == (True, "active")
    await aggregator.drain()
    await advance(client, sub, FEB + DAY)
    await invoicer.tick()

    first, last = await invoices(client, sub["id"])
    assert first["billingReason"] == "subscription_create"
    assert [(ln["price"]["id"], ln["amount"]) for ln in last["lines"]["data"]] == [
        (api["id"], 120)
    ]  # no seats billed for February
    ended = await get(client, f"/v1/subscriptions/{sub['id']}")
    assert (ended["status"], ended["endedAt"]) == ("canceled", FEB)
    assert [e["data"]["id"] for e in await events(client, "customer.subscription.deleted")] == [
        sub["id"]
    ]
    refused = await client.post(
        "/v1/usage_records",
        json={"subscriptionItem": api_item, "quantity": 1, "timestamp": FEB + DAY},
    )
    assert refused.status_code == 400


async def test_cancel_now_sends_a_final_invoice_for_the_usage_so_far(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    api = await price(client, unitAmount=10)
    sub = await clocked_subscription(client, [{"price": api["id"]}])
    item = sub["items"]["data"][0]["id"]
    await advance(client, sub, T0 + 5 * DAY)
    await usage(client, item, 8, T0 + 5 * DAY)
    await aggregator.drain()
    response = await client.delete(f"/v1/subscriptions/{sub['id']}")
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert (canceled["status"], canceled["canceledAt"]) == ("canceled", T0 + 5 * DAY)
    refused = await client.post(
        "/v1/usage_records",
        json={"subscriptionItem": item, "quantity": 1, "timestamp": T0 + 5 * DAY},
    )
    assert refused.status_code == 400
    await invoicer.tick()

    [final] = await invoices(client, sub["id"])
    assert final["billingReason"] == "subscription_cancel"
    assert (final["periodStart"], final["periodEnd"]) == (T0, T0 + 5 * DAY)
    assert [(ln["quantity"], ln["amount"]) for ln in final["lines"]["data"]] == [(8, 80)]
    assert final["status"] == "paid"
    again = await client.delete(f"/v1/subscriptions/{sub['id']}")
    assert again.status_code == 400
    await invoicer.tick()
    assert len(await invoices(client, sub["id"])) == 1


async def test_cancel_now_after_the_clock_ran_ahead_bills_every_period_then_the_last(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    api = await price(client, unitAmount=10)
    sub = await clocked_subscription(client, [{"price": api["id"]}])
    item = sub["items"]["data"][0]["id"]
    await usage(client, item, 3, T0 + 60)
    await advance(client, sub, MAR + 5 * DAY)  # no invoicer pass in between
    await usage(client, item, 4, MAR + 5 * DAY)  # lands in March's window
    await aggregator.drain()
    response = await client.delete(f"/v1/subscriptions/{sub['id']}")
    assert response.status_code == 200, response.text
    await invoicer.tick()

    january, february, final = await invoices(client, sub["id"])
    assert [
        (i["billingReason"], i["periodStart"], i["periodEnd"]) for i in (january, february, final)
    ] == [
        ("subscription_cycle", T0, FEB),
        ("subscription_cycle", FEB, MAR),
        ("subscription_cancel", MAR, MAR + 5 * DAY),
    ]
    assert [i["lines"]["data"][0]["quantity"] for i in (january, february, final)] == [3, 0, 4]
    ended = await get(client, f"/v1/subscriptions/{sub['id']}")
    assert (ended["status"], ended["endedAt"]) == ("canceled", MAR + 5 * DAY)
