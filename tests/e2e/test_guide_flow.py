"""The guide, end to end through HTTP: price → subscription → usage → invoice → webhook."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
from vinr_sdk import SignatureVerificationError
from vinr_sdk.webhooks import verify_header

from aggregator.worker import Aggregator
from dispatcher.worker import Dispatcher
from domain.signature import SIGNATURE_HEADER
from infra.asgi import read_body
from infra.devenv import free_port
from invoicer.worker import Invoicer
from tests.support.api import metered_price, post, subscribe
from tests.support.server import LiveServer


class Receiver:
    """A webhook endpoint: records raw bodies and signature headers."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str | None]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive, 1 << 20)
        signature = dict(scope["headers"]).get(SIGNATURE_HEADER.encode())
        self.calls.append((body, signature.decode() if signature else None))
        self.arrived.set()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"OK"})


async def test_guide_flow(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer, dispatcher: Dispatcher
) -> None:
    price = await metered_price(client)
    assert price["unitAmountDecimal"] == "0.2"
    assert price["recurring"]["aggregateUsage"] == "sum"
    sub = await subscribe(client, price["id"])
    assert sub["id"].startswith("sub_") and sub["status"] == "active"
    item = sub["items"]["data"][0]["id"]
    assert item.startswith("si_")

    receiver = Receiver()
    async with LiveServer(receiver, free_port()) as hook:
        endpoint = await post(
            client,
            "/v1/webhook_endpoints",
            {"url": hook.url + "/hooks", "enabledEvents": ["invoice.paid"]},
        )
        secret = endpoint["secret"]
        assert secret.startswith("whsec_")

        now = int(time.time())
        first = await post(
            client,
            "/v1/usage_records",
            {"subscriptionItem": item, "quantity": 18000, "timestamp": now, "action": "increment"},
            key="usage-req-1",
        )
        assert first["id"].startswith("mbu_")
        # The retry is answered from the stored result, with the same id, and not counted.
        retry = await client.post(
            "/v1/usage_records",
            headers={"Idempotency-Key": "usage-req-1"},
            json={
                "subscriptionItem": item,
                "quantity": 18000,
                "timestamp": now,
                "action": "increment",
            },
        )
        assert retry.status_code == 200
        assert retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json()["id"] == first["id"]
        await post(
            client,
            "/v1/usage_records/batch",
            {
                "subscriptionItem": item,
                "records": [
                    {"quantity": 400, "timestamp": now, "action": "increment"},
                    {"quantity": 20, "action": "increment"},
                ],
            },
            key="batch-1",
        )

        await aggregator.drain()
        summary = (
            await client.get("/v1/usage_records/summaries", params={"subscriptionItem": item})
        ).json()
        assert summary["data"][0]["totalUsage"] == 18420
        assert summary["data"][0]["period"] == {
            "start": sub["currentPeriodStart"],
            "end": sub["currentPeriodEnd"],
        }

        await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
        assert await invoicer.tick() >= 1
        invoices = (await client.get("/v1/invoices", params={"subscription": sub["id"]})).json()
        assert len(invoices["data"]) == 1
        invoice = invoices["data"][0]
        assert invoice["status"] == "paid"
        line = invoice["lines"]["data"][0]
        assert line["quantity"] == 18420
        assert line["amount"] == 3684  # 18420 × €0.002 = €36.84
        assert invoice["total"] == 3684
        assert line["period"] == {
            "start": sub["currentPeriodStart"],
            "end": sub["currentPeriodEnd"],
        }

        await dispatcher.tick()
        await asyncio.wait_for(receiver.arrived.wait(), 10)
        body, signature = receiver.calls[0]
        verify_header(body, signature, secret)
        event = orjson.loads(body)
        assert event["type"] == "invoice.paid"
        assert event["data"]["id"] == invoice["id"]
        assert event["data"]["subscription"] == sub["id"]
        assert event["data"]["periodEnd"] == sub["currentPeriodEnd"]
        # A tampered body or a wrong secret does not verify.
        tampered = body.replace(b"3684", b"3685")
        for payload, key in ((tampered, secret), (body, "whsec_wrong")):
            try:
                verify_header(payload, signature, key)
            except SignatureVerificationError:
                continue
            raise AssertionError("a bad signature verified")

    next_summary = (
        await client.get("/v1/usage_records/summaries", params={"subscriptionItem": item})
    ).json()
    assert next_summary["data"][0]["totalUsage"] == 0
    assert next_summary["data"][1]["totalUsage"] == 18420
    assert next_summary["data"][1]["invoice"] == invoice["id"]
