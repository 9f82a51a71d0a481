"""The Python SDK against the real server: the guide's calls in Python, and every resource."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from vinr_sdk import (
    AsyncVinr,
    AuthenticationError,
    InvalidRequestError,
    SignatureVerificationError,
    Vinr,
)

from aggregator.worker import Aggregator
from dispatcher.worker import Dispatcher
from infra.devenv import free_port
from invoicer.worker import Invoicer
from tests.support.server import LiveServer
from tests.support.webhooks import Receiver

METERED = {"interval": "month", "usage_type": "metered", "aggregate_usage": "sum"}


async def test_the_guide_with_the_async_client(
    api: str, secret_key: str, aggregator: Aggregator, invoicer: Invoicer, dispatcher: Dispatcher
) -> None:
    receiver = Receiver()
    async with (
        AsyncVinr(secret_key, api_base=api) as vinr,
        LiveServer(receiver, free_port()) as hook,
    ):
        endpoint = await vinr.webhook_endpoints.create(
            url=hook.url + "/", enabled_events=["invoice.paid"]
        )
        await vinr.customers.create(id="cust_8aZ2", name="Ada", payment_method="pm_card_visa")

        # "Define a metered price"
        product = await vinr.products.create(name="API access")
        price = await vinr.prices.create(
            product=product.id,
            currency="EUR",
            billing_scheme="usage",
            unit_amount_decimal="0.2",
            recurring=METERED,
        )
        assert price.unit_amount_decimal == "0.2" and price.recurring.aggregate_usage == "sum"

        # "Subscribe the customer"
        subscription = await vinr.subscriptions.create(
            customer="cust_8aZ2", items=[{"price": price.id}]
        )
        assert subscription.id.startswith("sub_")
        item = subscription["items"].data[0].id

        # "Report usage records", retried with the same key, then a batch.
        async def report_api_call(item_id: str, count: int, request_id: str) -> str:
            record = await vinr.usage_records.create(
                subscription_item=item_id,
                quantity=count,
                timestamp=int(time.time()),
                action="increment",
                idempotency_key=f"usage-{request_id}",
            )
            record_id: str = record.id
            return record_id

        first = await report_api_call(item, 18000, "req-1")
        assert first.startswith("mbu_")
        assert await report_api_call(item, 18000, "req-1") == first
        await vinr.usage_records.create_batch(
            subscription_item=item,
            records=[
                {"quantity": 400, "timestamp": int(time.time()), "action": "increment"},
                {"quantity": 20, "action": "increment"},
            ],
        )

        # "Aggregation & windows"
        await aggregator.drain()
        summary = await vinr.usage_records.summaries(subscription_item=item)
        assert summary.data[0].total_usage == 18420
        assert summary["data"][0]["totalUsage"] == 18420  # the API's own keys read too

        # "Test it": advance, invoice, charge, and invoice.paid reaches the webhook.
        await vinr.test_helpers.subscriptions.advance_period(subscription.id)
        assert await invoicer.tick() >= 1
        (invoice,) = (await vinr.invoices.list(subscription=subscription.id)).data
        assert invoice.status == "paid" and invoice.total == 3684
        assert invoice.lines.data[0].quantity == 18420
        assert (await vinr.invoices.retrieve(invoice.id)).id == invoice.id
        await dispatcher.tick()
        (arrival,) = receiver.arrivals
        event = vinr.webhooks.verify(arrival.body, arrival.signature, endpoint.secret)
        assert event.type == "invoice.paid"
        assert event.data.subscription == subscription.id
        assert event.data.period_end == subscription.current_period_end
        with pytest.raises(SignatureVerificationError):
            vinr.webhooks.verify(
                arrival.body.replace(b"3684", b"3685"), arrival.signature, endpoint.secret
            )
        assert (await vinr.events.retrieve(event.id)) == event
        (delivery,) = (await vinr.events.deliveries(event.id)).data
        assert delivery.status == "delivered" and delivery.webhook_endpoint == endpoint.id


def _every_resource(api: str, secret_key: str) -> dict[str, Any]:
    """The synchronous client through every resource (run in a thread: the server shares
    the test's event loop)."""
    with Vinr(secret_key, api_base=api) as vinr:
        product = vinr.products.create(name="Seats")
        assert vinr.products.retrieve(product.id) == product
        assert product.id in {p.id for p in vinr.products.list(limit=100).data}
        price = vinr.prices.create(
            product=product.id,
            currency="EUR",
            billing_scheme="tiered",
            tiers_mode="volume",
            recurring=METERED,
            tiers=[{"up_to": 5, "unit_amount": 700}, {"up_to": "inf", "unit_amount": 600}],
        )
        assert vinr.prices.retrieve(price.id).tiers_mode == "volume"
        assert price.id in {p.id for p in vinr.prices.list(limit=100).data}

        customer = vinr.customers.create(name="Grace", payment_method="4242424242424242")
        updated = vinr.customers.update(customer.id, email="grace@example.com")
        assert updated.email == "grace@example.com"
        assert vinr.customers.retrieve(customer.id).email == "grace@example.com"
        assert customer.id in {c.id for c in vinr.customers.list(limit=100).data}

        clock = vinr.test_helpers.test_clocks.create(frozen_time=1_748_390_400)
        subscription = vinr.subscriptions.create(
            customer=customer.id, test_clock=clock.id, items=[{"price": price.id}]
        )
        assert subscription.current_period_start == 1_748_390_400
        advanced = vinr.test_helpers.test_clocks.advance(clock.id, frozen_time=1_748_476_800)
        assert vinr.test_helpers.test_clocks.retrieve(clock.id) == advanced
        assert (
            vinr.subscriptions.update(
                subscription.id, cancel_at_period_end=True
            ).cancel_at_period_end
            is True
        )
        assert vinr.subscriptions.retrieve(subscription.id).cancel_at_period_end is True
        assert subscription.id in {s.id for s in vinr.subscriptions.list(limit=100).data}

        endpoint = vinr.webhook_endpoints.create(
            url="https://example.com/hooks", enabled_events=["*"]
        )
        rolled = vinr.webhook_endpoints.roll_secret(endpoint.id)
        assert rolled.secret != endpoint.secret
        assert vinr.webhook_endpoints.update(endpoint.id, status="disabled").status == "disabled"
        assert vinr.webhook_endpoints.retrieve(endpoint.id).status == "disabled"
        assert endpoint.id in {e.id for e in vinr.webhook_endpoints.list().data}
        assert vinr.webhook_endpoints.delete(endpoint.id).deleted is True
        with pytest.raises(InvalidRequestError) as info:
            vinr.webhook_endpoints.retrieve(endpoint.id)
        assert info.value.http_status == 404

        canceled = vinr.subscriptions.cancel(subscription.id)
        assert canceled.status == "canceled"
        events = vinr.events.list(type="customer.created")
        assert [e.data.id for e in events.data] == [customer.id]
        assert vinr.charges.list().object == "list"
        return {"events": [e.id for e in vinr.events.list(limit=100).data]}


async def test_every_resource_with_the_sync_client(api: str, secret_key: str) -> None:
    seen = await asyncio.to_thread(_every_resource, api, secret_key)
    assert len(seen["events"]) >= 3


async def test_errors_come_back_typed(api: str, secret_key: str) -> None:
    async with AsyncVinr(f"sk_test_{uuid.uuid4().hex}", api_base=api, max_retries=0) as nobody:
        with pytest.raises(AuthenticationError) as denied:
            await nobody.products.list()
    assert denied.value.http_status == 401 and denied.value.type == "authentication_error"
    async with AsyncVinr(secret_key, api_base=api) as vinr:
        with pytest.raises(InvalidRequestError) as bad:
            await vinr.prices.create(
                product="prod_nope", currency="EUR", recurring=METERED, unit_amount=5
            )
    assert bad.value.http_status in (400, 404) and bad.value.param == "product"
