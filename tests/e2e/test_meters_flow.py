"""Billing meters end to end, over HTTP with the real roles: a meter and a price on it beside
a usage-record price on one subscription; meter events single and batched, with decimals;
an identifier sent again after Redis forgot it is billed once; a cancel after its event and
one before it; summaries; a usage alert that fires once; the upcoming invoice equal to the
final one."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx

from aggregator.worker import Aggregator
from domain.meters import decimal_text
from infra.devenv import purge_redis_prefix
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import DAY, FEB, T0, advance, clocked_subscription, invoices, price


def _comparable(invoice: dict[str, Any]) -> list[Any]:
    """What an upcoming invoice must share with the final one."""
    lines = sorted(
        (ln["price"]["id"], ln["quantityDecimal"], ln["amount"], ln["period"]["start"])
        for ln in invoice["lines"]["data"]
    )
    return [invoice["total"], invoice["periodStart"], invoice["periodEnd"], lines]


async def _events_of(client: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    answer = await client.get("/v1/events", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    return [e for e in answer.json()["data"] if e["type"] == kind]


async def test_meters_from_events_to_invoice(
    client: httpx.AsyncClient,
    settings: Settings,
    aggregator: Aggregator,
    invoicer: Invoicer,
) -> None:
    event_name = f"storage_gb_{uuid.uuid4().hex[:8]}"
    meter = await post(
        client,
        "/v1/billing/meters",
        {
            "displayName": "Storage",
            "eventName": event_name,
            "defaultAggregation": {"formula": "sum"},
        },
    )
    product = await post(client, "/v1/products", {"name": "Storage"})
    storage = await post(
        client,
        "/v1/prices",
        {
            "product": product["id"],
            "currency": "EUR",
            "billingScheme": "tiered",
            "tiersMode": "graduated",
            "tiers": [
                {"upTo": 10, "unitAmountDecimal": "100"},
                {"upTo": "inf", "unitAmountDecimal": "12.5"},
            ],
            "recurring": {"interval": "month", "usageType": "metered", "meter": meter["id"]},
        },
    )
    assert storage["recurring"]["meter"] == meter["id"]
    calls = await price(client)  # usage records, €0.002 per call
    sub = await clocked_subscription(client, [{"price": calls["id"]}, {"price": storage["id"]}])
    customer = sub["customer"]
    items = {i["price"]["id"]: i["id"] for i in sub["items"]["data"]}
    alert = await post(
        client,
        "/v1/billing/alerts",
        {
            "title": "More than 12 GB",
            "alertType": "usage_threshold",
            "usageThreshold": {"meter": meter["id"], "gte": 12, "recurrence": "one_time"},
            "filter": {"customer": customer},
        },
    )
    await advance(client, sub, T0 + 10 * DAY)

    def event(identifier: str, value: str, ts: int) -> dict[str, Any]:
        return {
            "eventName": event_name,
            "identifier": identifier,
            "timestamp": ts,
            "payload": {"customer": customer, "value": value},
        }

    # A cancel that comes before its event: the event never counts.
    early = await post(
        client,
        "/v1/billing/meter_event_adjustments",
        {"eventName": event_name, "type": "cancel", "cancel": {"identifier": "early"}},
    )
    assert early["status"] == "pending"
    first = event("e1", "1.5", T0 + DAY)
    await post(client, "/v1/billing/meter_events", first)
    batch = await post(
        client,
        "/v1/billing/meter_events/batch",
        {
            "events": [
                event("e2", "2.25", T0 + 2 * DAY + 7),
                event("e3", "4", T0 + 2 * DAY + 61),
                event("early", "1000", T0 + 3 * DAY),
                event("doomed", "0.75", T0 + 4 * DAY),
                event("e4", "3.000000000001", T0 + 5 * DAY),
            ]
        },
    )
    assert (batch["count"], batch["duplicates"]) == (5, 0)
    replay = await client.post("/v1/billing/meter_events", json=first)
    assert replay.status_code == 200 and replay.headers.get("idempotent-replayed") == "true"
    await post(
        client,
        "/v1/usage_records",
        {"subscriptionItem": items[calls["id"]], "quantity": 700, "timestamp": T0 + DAY},
    )
    await aggregator.drain()

    # Redis forgets every key: the same identifier is accepted again, and the ledger drops it.
    await purge_redis_prefix(settings.key("idem"))
    again = await client.post("/v1/billing/meter_events", json=first)
    assert again.status_code == 200 and "idempotent-replayed" not in again.headers
    await aggregator.drain()

    # A cancel after its event takes it out of the usage and the invoice.
    doomed = await post(
        client,
        "/v1/billing/meter_event_adjustments",
        {"eventName": event_name, "type": "cancel", "cancel": {"identifier": "doomed"}},
    )
    assert doomed["status"] == "complete"

    counted = [Decimal("1.5"), Decimal("2.25"), Decimal("4"), Decimal("3.000000000001")]
    used = sum(counted, Decimal(0))
    summaries = await client.get(
        f"/v1/billing/meters/{meter['id']}/event_summaries",
        params={"customer": customer, "startTime": T0, "endTime": FEB},
    )
    assert summaries.status_code == 200, summaries.text
    [summary] = summaries.json()["data"]
    assert summary["aggregatedValueDecimal"] == decimal_text(used) == "10.750000000001"
    listed = await client.get(
        f"/v1/billing/meters/{meter['id']}/events", params={"customer": customer, "limit": 100}
    )
    statuses = {e["identifier"]: e["status"] for e in listed.json()["data"]}
    assert statuses == {
        "e1": "counted",
        "e2": "counted",
        "e3": "counted",
        "e4": "counted",
        "early": "cancelled",
        "doomed": "cancelled",
    }

    # The alert waits for its threshold, then fires once however much more arrives.
    assert await _events_of(client, "billing.alert.triggered") == []
    await post(client, "/v1/billing/meter_events", event("e5", "1.25", T0 + 6 * DAY))
    await aggregator.drain()
    await post(client, "/v1/billing/meter_events", event("e6", "0.5", T0 + 7 * DAY))
    await aggregator.drain()
    fired = await _events_of(client, "billing.alert.triggered")
    assert len(fired) == 1
    data = fired[0]["data"]
    assert (data["alert"]["id"], data["customer"]) == (alert["id"], customer)
    assert data["valueDecimal"] == "12.000000000001"
    used += Decimal("1.75")

    upcoming = await client.get("/v1/invoices/upcoming", params={"subscription": sub["id"]})
    assert upcoming.status_code == 200, upcoming.text
    ahead = upcoming.json()
    assert ahead["id"] is None and ahead["status"] == "draft"

    await advance(client, sub, FEB)
    await invoicer.tick()
    invoice = (await invoices(client, sub["id"]))[-1]
    assert (invoice["billingReason"], invoice["status"]) == ("subscription_cycle", "paid")
    lines = {ln["price"]["id"]: ln for ln in invoice["lines"]["data"]}
    storage_line = lines[storage["id"]]
    assert storage_line["quantityDecimal"] == decimal_text(used) == "12.500000000001"
    exact = 10 * 100 + (used - 10) * Decimal("12.5")
    assert storage_line["amount"] == int(exact.quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    assert (lines[calls["id"]]["quantity"], lines[calls["id"]]["amount"]) == (700, 140)
    assert invoice["total"] == storage_line["amount"] + 140
    assert _comparable(ahead) == _comparable(invoice)

    # The period is invoiced: its events are refused now, naming the boundary.
    late = await client.post("/v1/billing/meter_events", json=event("late", "1", FEB - 60))
    assert late.status_code == 400, late.text
    assert late.json()["error"]["param"] == "timestamp"
    assert str(FEB) in late.json()["error"]["message"]
    refused = await client.post(
        "/v1/billing/meter_event_adjustments",
        json={"eventName": event_name, "type": "cancel", "cancel": {"identifier": "e2"}},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "event_in_invoiced_period"
