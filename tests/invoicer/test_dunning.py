"""Sandbox payments and dunning under a test clock:
a declined card walks the retry schedule (3, 5, 7, 6 days), the subscription goes
``past_due``, every failure is an ``invoice.payment_failed``; a replaced card pays the next
retry (or ``POST /v1/invoices/{id}/pay``); exhausted retries end ``unpaid`` or ``canceled``."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from infra.settings import Settings
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
    price,
    usage,
)


async def _declined_invoice(
    client: httpx.AsyncClient, aggregator: Aggregator, payment_method: str
) -> tuple[dict[str, Any], str]:
    """A subscription whose January usage (10 × 1.00) is due on a declining card."""
    p = await price(client, unitAmount=100)
    sub = await clocked_subscription(client, [{"price": p["id"]}], payment_method=payment_method)
    await usage(client, sub["items"]["data"][0]["id"], 10, T0 + 60)
    await aggregator.drain()
    return sub, sub["customer"]


async def _charges(client: httpx.AsyncClient, invoice_id: str) -> list[dict[str, Any]]:
    listing = await get(client, f"/v1/charges?invoice={invoice_id}&limit=100")
    return sorted(listing["data"], key=lambda c: c["attempt"])


async def test_declined_card_walks_dunning_and_recovers_with_a_new_card(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    sub, customer = await _declined_invoice(client, aggregator, "pm_card_chargeDeclined")
    clock = await advance(client, sub, FEB)
    assert clock["status"] == "advancing"  # the period's end is due
    await invoicer.tick()
    assert (await get(client, f"/v1/test_helpers/test_clocks/{sub['testClock']}"))[
        "status"
    ] == "ready"

    [invoice] = await invoices(client, sub["id"])
    assert (invoice["status"], invoice["total"], invoice["attemptCount"]) == ("open", 1000, 1)
    assert invoice["nextPaymentAttempt"] == FEB + 3 * DAY
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "past_due"
    assert len(await events(client, "invoice.payment_failed")) == 1

    await advance(client, sub, FEB + 3 * DAY)  # retry 1 of 4: declined again
    await invoicer.tick()
    invoice = await get(client, f"/v1/invoices/{invoice['id']}")
    assert (invoice["status"], invoice["attemptCount"]) == ("open", 2)
    assert invoice["nextPaymentAttempt"] == FEB + 8 * DAY
    failed = await events(client, "invoice.payment_failed")
    assert sorted(e["data"]["attemptCount"] for e in failed) == [1, 2]

    declining = (await get(client, f"/v1/customers/{customer}"))["defaultPaymentMethod"]
    updated = await post(client, f"/v1/customers/{customer}", {"paymentMethod": "pm_card_visa"})
    assert updated["defaultPaymentMethod"] not in (None, declining)
    await advance(client, sub, FEB + 8 * DAY - 1)  # not due yet: nothing happens
    assert await invoicer.tick() == 0
    await advance(client, sub, FEB + 8 * DAY)  # retry 2 of 4 succeeds
    await invoicer.tick()

    invoice = await get(client, f"/v1/invoices/{invoice['id']}")
    assert (invoice["status"], invoice["amountPaid"], invoice["attemptCount"]) == ("paid", 1000, 3)
    assert invoice["nextPaymentAttempt"] is None
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "active"
    [paid] = await events(client, "invoice.paid")
    assert paid["data"]["id"] == invoice["id"] and paid["data"]["status"] == "paid"
    assert len(await events(client, "invoice.payment_failed")) == 2
    charges = await _charges(client, invoice["id"])
    assert [(c["attempt"], c["status"], c["failureCode"]) for c in charges] == [
        (1, "failed", "generic_decline"),
        (2, "failed", "generic_decline"),
        (3, "succeeded", None),
    ]
    assert [c["paymentMethod"] for c in charges] == [
        declining,
        declining,
        updated["defaultPaymentMethod"],
    ]
    assert [c["created"] for c in charges] == [FEB, FEB + 3 * DAY, FEB + 8 * DAY]
    statuses = [
        e["data"]["status"]
        for e in await events(client, "customer.subscription.updated")
        if e["data"]["id"] == sub["id"]
    ]
    assert {"past_due", "active"} <= set(statuses)


async def test_exhausted_retries_leave_the_subscription_unpaid_until_paid_by_hand(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    sub, customer = await _declined_invoice(client, aggregator, "4000000000009995")
    await advance(client, sub, FEB + 21 * DAY)  # one jump across every retry date
    await invoicer.tick()

    [invoice] = await invoices(client, sub["id"])
    assert (invoice["status"], invoice["attemptCount"]) == ("open", 5)
    assert invoice["nextPaymentAttempt"] is None  # the schedule is over
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "unpaid"
    assert len(await events(client, "invoice.payment_failed")) == 5
    charges = await _charges(client, invoice["id"])
    assert [c["created"] - FEB for c in charges] == [0, 3 * DAY, 8 * DAY, 15 * DAY, 21 * DAY]
    assert {c["failureCode"] for c in charges} == {"insufficient_funds"}

    # Charges list: newest first, cursor pagination.
    first = await get(client, "/v1/charges?limit=2")
    assert first["hasMore"] is True and len(first["data"]) == 2
    rest = await get(client, f"/v1/charges?limit=10&startingAfter={first['data'][-1]['id']}")
    assert rest["hasMore"] is False
    assert [c["id"] for c in first["data"] + rest["data"]] == [c["id"] for c in charges[::-1]]

    await post(client, f"/v1/customers/{customer}", {"paymentMethod": "4242 4242 4242 4242"})
    paid = await post(client, f"/v1/invoices/{invoice['id']}/pay")
    assert (paid["status"], paid["attemptCount"]) == ("paid", 6)
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "active"
    assert len(await events(client, "invoice.paid")) == 1
    again = await client.post(f"/v1/invoices/{invoice['id']}/pay")
    assert again.status_code == 400
    assert again.json()["error"]["code"] == "invoice_not_open"


async def test_paying_by_hand_with_a_still_declining_card_keeps_the_schedule(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    sub, _ = await _declined_invoice(client, aggregator, "pm_card_chargeDeclinedExpiredCard")
    await advance(client, sub, FEB)
    await invoicer.tick()
    [invoice] = await invoices(client, sub["id"])
    retried = await post(client, f"/v1/invoices/{invoice['id']}/pay")
    assert (retried["status"], retried["attemptCount"]) == ("open", 2)
    assert retried["nextPaymentAttempt"] == FEB + 3 * DAY  # the schedule did not move
    failures = await events(client, "invoice.payment_failed")
    assert len(failures) == 2
    charges = await _charges(client, invoice["id"])
    assert [c["failureCode"] for c in charges] == ["expired_card", "expired_card"]


@pytest.fixture
async def canceling_invoicer(settings: Settings, pool: asyncpg.Pool) -> Any:
    rules = settings.model_copy(
        update={"dunning_final_action": "canceled", "dunning_retry_days": (1, 2)}
    )
    async with Invoicer(rules, pool=pool) as invoicer:
        yield invoicer


async def test_exhausted_retries_cancel_when_so_configured_and_bill_usage_so_far(
    client: httpx.AsyncClient, aggregator: Aggregator, canceling_invoicer: Invoicer
) -> None:
    sub, _ = await _declined_invoice(client, aggregator, "4000000000000341")
    await advance(client, sub, FEB)
    await canceling_invoicer.tick()  # January: attempt 1 fails
    item = sub["items"]["data"][0]["id"]
    await usage(client, item, 4, FEB + 60)  # February usage, before the cancel
    await aggregator.drain()
    await advance(client, sub, FEB + 3 * DAY)
    await canceling_invoicer.tick()  # retries at +1 and +3 days fail

    current = await get(client, f"/v1/subscriptions/{sub['id']}")
    assert current["status"] == "canceled"
    assert current["canceledAt"] == current["endedAt"] == FEB + 3 * DAY
    assert [e["data"]["id"] for e in await events(client, "customer.subscription.deleted")] == [
        sub["id"]
    ]
    january, final = await invoices(client, sub["id"])
    assert (january["attemptCount"], january["nextPaymentAttempt"]) == (3, None)
    assert final["billingReason"] == "subscription_cancel"
    assert (final["periodStart"], final["periodEnd"]) == (FEB, FEB + 3 * DAY)
    assert [(ln["quantity"], ln["amount"]) for ln in final["lines"]["data"]] == [(4, 400)]
    refused = await client.post(
        "/v1/usage_records",
        json={"subscriptionItem": item, "quantity": 1, "timestamp": FEB + 3 * DAY},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "subscription_canceled"
    assert current["currentPeriodEnd"] == MAR
