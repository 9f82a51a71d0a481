"""The webhooks API: endpoints (get, update, disable, delete, roll the secret), an event's
deliveries, and resending, through HTTP against real services."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from vinr_sdk import SignatureVerificationError, verify

from dispatcher.worker import Dispatcher
from domain.accounts import create_account
from infra.devenv import free_port
from infra.settings import Settings
from tests.support.api import post
from tests.support.server import LiveServer
from tests.support.webhooks import (
    Receiver,
    all_events,
    deliveries,
    drive,
    endpoint_for,
    no_wait,
)


async def one_event(client: httpx.AsyncClient) -> dict[str, Any]:
    customer = await post(client, "/v1/customers", {"name": "Ada"})
    (event,) = [
        e
        for e in (await all_events(client, "customer.created")).values()
        if e["data"]["id"] == customer["id"]
    ]
    return event


async def test_deliveries_are_listed_with_their_attempts_and_can_be_resent(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver(fail_first=1)
    async with (
        LiveServer(receiver, free_port()) as hook,
        Dispatcher(settings, pool=pool, retry_delay_s=no_wait) as dispatcher,
    ):
        every = await endpoint_for(client, hook.url + "/all", ("*",))
        created = await endpoint_for(client, hook.url + "/created")
        other = await endpoint_for(client, hook.url + "/paid", ("invoice.paid",))
        event = await one_event(client)
        url = f"/v1/events/{event['id']}/deliveries"

        queued = (await client.get(url)).json()
        assert queued["object"] == "list" and queued["hasMore"] is False
        assert sorted(d["webhookEndpoint"] for d in queued["data"]) == sorted(
            [every["id"], created["id"]]
        ), "one delivery per subscribed endpoint"
        assert {d["status"] for d in queued["data"]} == {"pending"}
        assert all(d["attempts"]["data"] == [] for d in queued["data"])

        for endpoint in (every, created):
            await drive(pool, endpoint["id"], dispatcher)
        listed = (await client.get(url)).json()["data"]
        assert {d["status"] for d in listed} == {"delivered"}
        tries = sorted((d["attempts"]["data"] for d in listed), key=len)
        assert [[a["statusCode"] for a in t] for t in tries] == [[200], [500, 200]]
        first = listed[0]
        assert first["object"] == "webhook_delivery" and first["id"].startswith("whd_")
        assert first["event"] == event["id"] and first["deliveredAt"] is not None
        assert first["nextAttemptAt"] is None and first["attemptCount"] >= 1
        only = (await client.get(url, params={"webhookEndpoint": created["id"]})).json()
        assert [d["webhookEndpoint"] for d in only["data"]] == [created["id"]]
        paged = (await client.get(url, params={"limit": 1})).json()
        assert len(paged["data"]) == 1 and paged["hasMore"] is True
        rest = (
            await client.get(url, params={"limit": 1, "startingAfter": paged["data"][0]["id"]})
        ).json()
        assert len(rest["data"]) == 1 and rest["hasMore"] is False
        assert rest["data"][0]["id"] != paged["data"][0]["id"]

        # Resend to every subscribed endpoint: both get it again, with one more attempt.
        before = len(receiver.arrivals)
        resent = await post(client, f"/v1/events/{event['id']}/resend")
        assert sorted(d["webhookEndpoint"] for d in resent["data"]) == sorted(
            [every["id"], created["id"]]
        )
        assert {d["status"] for d in resent["data"]} == {"pending"}
        for endpoint in (every, created):
            await drive(pool, endpoint["id"], dispatcher)
        assert len(receiver.arrivals) == before + 2
        assert {d["status"] for d in (await client.get(url)).json()["data"]} == {"delivered"}

        # Resend to one endpoint, even one not subscribed to the type (an explicit choice).
        one = await post(
            client, f"/v1/events/{event['id']}/resend", {"webhookEndpoint": other["id"]}
        )
        assert [d["webhookEndpoint"] for d in one["data"]] == [other["id"]]
        await drive(pool, other["id"], dispatcher)
        last = receiver.arrivals[-1]
        assert verify(last.body, last.signature, other["secret"]).id == event["id"]

        missing = await client.post(
            f"/v1/events/{event['id']}/resend", json={"webhookEndpoint": "we_nope"}
        )
        assert missing.status_code == 404
        assert missing.json()["error"]["param"] == "webhookEndpoint"
        await post(client, f"/v1/webhook_endpoints/{other['id']}", {"status": "disabled"})
        refused = await client.post(
            f"/v1/events/{event['id']}/resend", json={"webhookEndpoint": other["id"]}
        )
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "endpoint_disabled"
    assert (await client.get("/v1/events/evt_nope/deliveries")).status_code == 404
    assert (await client.post("/v1/events/evt_nope/resend", json={})).status_code == 404


async def test_a_rolled_secret_signs_alongside_the_old_one_for_24_hours(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver()
    async with LiveServer(receiver, free_port()) as hook:
        endpoint = await endpoint_for(client, hook.url + "/")
        old = endpoint["secret"]
        rolled = await post(client, f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret")
        new = rolled["secret"]
        assert new.startswith("whsec_") and new != old
        shown = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}")).json()
        assert "secret" not in shown

        event = await one_event(client)
        async with Dispatcher(settings, pool=pool) as now:
            await drive(pool, endpoint["id"], now)
        body, header = receiver.arrivals[-1].body, receiver.arrivals[-1].signature
        assert header is not None and header.count("v1=") == 2
        assert verify(body, header, new).id == event["id"]
        assert verify(body, header, old).id == event["id"]

        # A day later the old secret no longer signs.
        later = time.time() + 86_400 + 60
        await post(client, f"/v1/events/{event['id']}/resend")
        async with Dispatcher(settings, pool=pool, now=lambda: later) as tomorrow:
            await drive(pool, endpoint["id"], tomorrow)
        body, header = receiver.arrivals[-1].body, receiver.arrivals[-1].signature
        assert header is not None and header.count("v1=") == 1
        assert verify(body, header, new, now=int(later)).id == event["id"]
        with pytest.raises(SignatureVerificationError) as info:
            verify(body, header, old, now=int(later))
        assert info.value.code == "no_matching_signature"


async def test_endpoints_can_be_read_updated_disabled_and_deleted(
    client: httpx.AsyncClient, pool: asyncpg.Pool, api: str
) -> None:
    endpoint = await endpoint_for(client, f"http://127.0.0.1:{free_port()}/a")
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    got = (await client.get(path)).json()
    assert got == {k: v for k, v in endpoint.items() if k != "secret"}

    updated = await post(
        client,
        path,
        {
            "url": "https://example.com/b",
            "enabledEvents": ["customer.created", "invoice.paid"],
            "description": "billing hooks",
        },
    )
    assert updated["url"] == "https://example.com/b"
    assert updated["enabledEvents"] == ["customer.created", "invoice.paid"]
    assert updated["description"] == "billing hooks" and updated["status"] == "enabled"
    kept = await post(client, path, {"enabledEvents": ["customer.created"]})
    assert kept["url"] == "https://example.com/b" and kept["description"] == "billing hooks"
    for body, param in (
        ({"enabledEvents": ["invoice.nope"]}, "enabledEvents[0]"),
        ({"status": "failing"}, "status"),
        ({"url": "not a url"}, "url"),
        ({"secret": "whsec_mine"}, "secret"),
    ):
        bad = await client.post(path, json=body)
        assert bad.status_code == 400, bad.text
        assert bad.json()["error"]["param"] == param

    # Disabling cancels what is pending and stops new deliveries; enabling resumes them.
    await one_event(client)
    (pending,) = await deliveries(pool, endpoint["id"])
    assert pending["status"] == "pending"
    assert (await post(client, path, {"status": "disabled"}))["status"] == "disabled"
    (canceled,) = await deliveries(pool, endpoint["id"])
    assert canceled["status"] == "canceled"
    await one_event(client)
    assert len(await deliveries(pool, endpoint["id"])) == 1
    assert (await post(client, path, {"status": "enabled"}))["status"] == "enabled"
    event = await one_event(client)
    assert len(await deliveries(pool, endpoint["id"])) == 2

    # Another account sees none of it.
    async with pool.acquire() as conn:
        _, stranger_key, _ = await create_account(conn, f"stranger-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"Bearer {stranger_key}"}
    ) as stranger:
        assert (await stranger.get(path)).status_code == 404
        assert (await stranger.post(path, json={"status": "disabled"})).status_code == 404
        assert (await stranger.delete(path)).status_code == 404
        assert (await stranger.post(path + "/roll_secret")).status_code == 404
        assert (await stranger.get(f"/v1/events/{event['id']}/deliveries")).status_code == 404

    deleted = (await client.delete(path)).json()
    assert deleted == {"id": endpoint["id"], "object": "webhook_endpoint", "deleted": True}
    assert {r["status"] for r in await deliveries(pool, endpoint["id"])} == {"canceled"}
    assert (await client.get(path)).status_code == 404
    assert (await client.post(path, json={"status": "enabled"})).status_code == 404
    assert (await client.post(path + "/roll_secret")).status_code == 404
    assert (await client.delete(path)).status_code == 404
    listed = (await client.get("/v1/webhook_endpoints", params={"limit": 100})).json()
    assert endpoint["id"] not in {e["id"] for e in listed["data"]}
    await one_event(client)
    assert len(await deliveries(pool, endpoint["id"])) == 2, "a deleted endpoint gets nothing"
    history = (await client.get(f"/v1/events/{event['id']}/deliveries")).json()
    assert [d["webhookEndpoint"] for d in history["data"]] == [endpoint["id"]]


async def test_the_new_routes_are_in_the_openapi_document(api: str) -> None:
    async with httpx.AsyncClient(base_url=api) as anonymous:
        paths = (await anonymous.get("/openapi.json")).json()["paths"]
    assert set(paths["/v1/webhook_endpoints/{endpoint_id}"]) == {"get", "post", "delete"}
    for path in ("/v1/webhook_endpoints/{endpoint_id}/roll_secret", "/v1/events/{event_id}/resend"):
        assert "post" in paths[path]
    assert "get" in paths["/v1/events/{event_id}/deliveries"]
