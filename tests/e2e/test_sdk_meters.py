"""The Python SDK's billing meters against the real server: every call the README shows, with
the answers the server gives (shapes, casing, exact decimals)."""

from __future__ import annotations

import asyncio
import time
import uuid

from vinr_sdk import AsyncVinr, InvalidRequestError

from aggregator.worker import Aggregator


async def test_meters_through_the_sdk(api: str, secret_key: str, aggregator: Aggregator) -> None:
    event_name = f"llm.tokens.{uuid.uuid4().hex[:8]}"
    async with AsyncVinr(secret_key, api_base=api) as vinr:
        customer = await vinr.customers.create(name="Ada", payment_method="pm_card_visa")
        meter = await vinr.billing.meters.create(
            display_name="LLM tokens",
            event_name=event_name,
            default_aggregation={"formula": "sum"},
            value_settings={"event_payload_key": "tokens"},
        )
        assert meter.id.startswith("mtr_") and meter.status == "active"
        assert meter.value_settings.event_payload_key == "tokens"
        product = await vinr.products.create(name="LLM API")
        price = await vinr.prices.create(
            product=product.id,
            currency="EUR",
            billing_scheme="per_unit",
            unit_amount_decimal="0.04",
            recurring={"interval": "month", "usage_type": "metered", "meter": meter.id},
        )
        assert price.recurring.meter == meter.id
        subscription = await vinr.subscriptions.create(
            customer=customer.id, items=[{"price": price.id}]
        )
        one = await vinr.billing.meter_events.create(
            event_name=event_name,
            payload={"customer": customer.id, "tokens": 1200},
            identifier="req_1",
        )
        assert one.identifier == "req_1" and one.payload["tokens"] == 1200
        batch = await vinr.billing.meter_events.create_batch(
            events=[
                {
                    "event_name": event_name,
                    "payload": {"customer": customer.id, "tokens": "350.5"},
                    "identifier": "req_2",
                },
                {
                    "event_name": event_name,
                    "payload": {"customer": customer.id, "tokens": 99},
                    "identifier": "req_3",
                },
            ]
        )
        assert batch.count == 2
        await aggregator.drain()
        cancel = await vinr.billing.meter_event_adjustments.create(
            event_name=event_name, type="cancel", cancel={"identifier": "req_3"}
        )
        assert cancel.status == "complete"

        now = int(time.time())
        today = now // 86_400 * 86_400
        summaries = await vinr.billing.meters.list_event_summaries(
            meter.id,
            customer=customer.id,
            start_time=today,
            end_time=today + 86_400,
            value_grouping_window="hour",
        )
        assert len(summaries.data) == 24
        assert sum(s.aggregated_value for s in summaries.data) == 1550.5
        assert [s.aggregated_value_decimal for s in summaries.data if s.aggregated_value] == [
            "1550.5"
        ]
        events = await vinr.billing.meters.list_events(meter.id, customer=customer.id)
        assert {e.identifier: e.status for e in events.data} == {
            "req_1": "counted",
            "req_2": "counted",
            "req_3": "cancelled",
        }

        alert = await vinr.billing.alerts.create(
            title="1M tokens",
            alert_type="usage_threshold",
            usage_threshold={"meter": meter.id, "gte": 1_000_000, "recurrence": "one_time"},
            filter={"customer": customer.id},
        )
        assert alert.id.startswith("alrt_") and alert.filter.customer == customer.id
        archived = await vinr.billing.alerts.archive(alert.id)
        assert archived.status == "archived"

        upcoming = await vinr.invoices.upcoming(subscription=subscription.id)
        assert upcoming.id is None and upcoming.status == "draft"
        [line] = upcoming.lines.data
        assert line.quantity_decimal == "1550.5" and line.amount == 62  # 1550.5 × 0.04 cents

        deactivated = await vinr.billing.meters.deactivate(meter.id)
        assert deactivated.status == "inactive"
        # Every API process drops its meter cache within half a second of the change.
        started = time.monotonic()
        while True:
            try:
                await vinr.billing.meter_events.create(
                    event_name=event_name, payload={"customer": customer.id, "tokens": 1}
                )
            except InvalidRequestError as refused:
                assert refused.param == "eventName"
                break
            assert time.monotonic() - started < 1.0, "an inactive meter's events are refused"
            await asyncio.sleep(0.05)
