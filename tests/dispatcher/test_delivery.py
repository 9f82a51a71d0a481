"""Webhook delivery on real services: outages, crashes, concurrency and the 3-day limit.

Events come from real state changes (``POST /v1/customers`` → ``customer.created``);
endpoints are real HTTP servers on local ports. Time is driven through the dispatcher's
``now`` and ``retry_delay_s`` instead of sleeping through the backoff schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter

import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from vinr_sdk import verify

from dispatcher.worker import Dispatcher
from infra.devenv import free_port
from infra.settings import Settings
from tests.support.api import eventually
from tests.support.server import LiveServer
from tests.support.webhooks import (
    Receiver,
    all_events,
    assert_retries_only,
    attempts,
    create_customers,
    deliveries,
    drive,
    endpoint_for,
    no_wait,
)


@pytest.mark.parametrize("outage", ["http_500", "connection_refused"])
async def test_an_endpoint_that_recovers_receives_every_event(
    outage: str, client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver(fail_first=15 if outage == "http_500" else 0)
    port = free_port()
    endpoint = await endpoint_for(client, f"http://127.0.0.1:{port}/hooks")
    await create_customers(client, 10)
    events = await all_events(client, "customer.created")
    assert len(events) == 10

    async with Dispatcher(settings, pool=pool, retry_delay_s=no_wait) as dispatcher:
        if outage == "connection_refused":
            for _ in range(3):
                await dispatcher.tick()
            down = await deliveries(pool, endpoint["id"])
            assert {r["status"] for r in down} == {"pending"}
            assert all(
                r["attempts"] >= 3
                and r["last_status_code"] is None
                and "ConnectError" in r["last_error"]
                for r in down
            )
        async with LiveServer(receiver, port):
            await drive(pool, endpoint["id"], dispatcher)

    rows = await deliveries(pool, endpoint["id"])
    assert len(rows) == 10 and {r["status"] for r in rows} == {"delivered"}
    arrived = receiver.by_event(endpoint["secret"])
    assert set(arrived) == set(events), "every event reached the endpoint"
    for event_id, got in arrived.items():
        assert [a.status for a in got].count(200) == 1
        assert verify(got[-1].body, got[-1].signature, endpoint["secret"]) == events[event_id]
    history = {r["id"]: await attempts(pool, r["id"]) for r in rows}
    assert_retries_only(rows, history, arrived)
    assert sum(r["attempts"] for r in rows) > len(rows), "the outage caused retries"


async def test_a_stopped_dispatcher_resumes_without_loss(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver()
    receiver.hold.clear()
    port = free_port()
    async with LiveServer(receiver, port):
        endpoint = await endpoint_for(client, f"http://127.0.0.1:{port}/")
        await create_customers(client, 12)
        events = await all_events(client, "customer.created")

        # The first dispatcher dies with its claimed requests in flight (held by the
        # endpoint) and the rest never claimed.
        first = Dispatcher(settings.model_copy(update={"webhook_concurrency": 3}), pool=pool)
        await first.start()
        running = asyncio.create_task(first.run())

        async def all_claims_in_flight() -> bool:
            rows = await deliveries(pool, endpoint["id"])
            claimed = sum(1 for r in rows if r["attempts"])
            return claimed > 0 and receiver.waiting == claimed

        await eventually(all_claims_in_flight)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await first.stop()
        receiver.hold.set()
        rows = await deliveries(pool, endpoint["id"])
        assert {r["status"] for r in rows} == {"pending"}
        interrupted = receiver.waiting
        assert Counter(r["attempts"] for r in rows) == {1: interrupted, 0: 12 - interrupted}

        # A new dispatcher, once the dead one's leases have run out, delivers everything.
        lease_s = settings.webhook_timeout_s + 5
        second = Dispatcher(settings, pool=pool, now=lambda: time.time() + lease_s + 1)
        async with second:
            await drive(pool, endpoint["id"], second)

    rows = await deliveries(pool, endpoint["id"])
    assert {r["status"] for r in rows} == {"delivered"}
    arrived = receiver.by_event(endpoint["secret"])
    assert set(arrived) == set(events)
    assert (
        sorted(len(a) for a in arrived.values()) == [1] * (12 - interrupted) + [2] * interrupted
    ), "only the interrupted deliveries were sent twice"
    for row in rows:
        assert len(arrived[row["event_id"]]) == row["attempts"]


async def test_two_dispatchers_share_the_work_without_double_sends(
    client: httpx.AsyncClient, settings: Settings, pool: asyncpg.Pool
) -> None:
    receiver = Receiver(delay_s=0.05)
    narrow = settings.model_copy(update={"webhook_concurrency": 8})

    async def work(dispatcher: Dispatcher) -> int:
        """Tick on its own schedule (claims overlap the other's requests in flight)."""
        claimed = 0
        while any(r["status"] == "pending" for r in await deliveries(pool, endpoint["id"])):
            sent = await dispatcher.tick()
            claimed += sent
            if not sent:
                await asyncio.sleep(0.01)
        return claimed

    async with LiveServer(receiver, free_port()) as hook:
        endpoint = await endpoint_for(client, hook.url + "/")
        await create_customers(client, 40)
        events = await all_events(client, "customer.created")
        # Each has its own pool and HTTP client, as two processes would.
        async with Dispatcher(narrow) as one, Dispatcher(narrow) as two:
            claimed = await asyncio.wait_for(asyncio.gather(work(one), work(two)), 60)

    assert min(claimed) > 0, f"both dispatchers worked: {claimed}"
    rows = await deliveries(pool, endpoint["id"])
    assert len(rows) == 40 and {r["status"] for r in rows} == {"delivered"}
    assert {r["attempts"] for r in rows} == {1}
    arrived = receiver.by_event(endpoint["secret"])
    assert set(arrived) == set(events)
    assert {len(a) for a in arrived.values()} == {1}, "no event was sent twice"


class FakeClock:
    def __init__(self, start: float) -> None:
        self.t = start

    def __call__(self) -> float:
        return self.t


async def count_failing(pool: asyncpg.Pool) -> int:
    """Failing endpoints in the whole database: the gauge counts across accounts."""
    count: int = await pool.fetchval(
        "SELECT count(*) FROM webhook_endpoints WHERE status = 'failing'"
    )
    return count


def failing_gauge() -> float | None:
    return REGISTRY.get_sample_value("vinr_webhook_endpoints_failing")


async def test_an_endpoint_failing_for_three_days_is_marked_failing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver(status=500)
    clock = FakeClock(time.time())
    async with LiveServer(receiver, free_port()) as hook:
        endpoint = await endpoint_for(client, hook.url + "/")
        await create_customers(client, 1)
        async with Dispatcher(settings, pool=pool, now=clock) as dispatcher:
            for _ in range(200):
                await dispatcher.tick()
                (row,) = await deliveries(pool, endpoint["id"])
                if row["status"] != "pending":
                    break
                clock.t = max(clock.t, row["next_attempt_at"])
            assert row["status"] == "failed"
            assert row["last_status_code"] == 500

            # Exponential backoff with jitter, 10 s doubling to 6 h, for no more than 3 days.
            tries = await attempts(pool, row["id"])
            assert len(tries) == row["attempts"] >= 15
            for k in range(1, len(tries)):
                gap = tries[k]["created"] - tries[k - 1]["created"]
                base = min(10 * 2 ** (k - 1), 6 * 3600)
                assert 0.5 * base - 1 <= gap <= base + 1, (k, gap)
            span = tries[-1]["created"] - tries[0]["created"]
            max_age = settings.webhook_max_age_s
            assert max_age - 6 * 3600 - 1 <= span <= max_age

            marked = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}")).json()
            assert marked["status"] == "failing"
            signals = (
                await client.get("/v1/events", params={"type": "webhook_endpoint.disabled"})
            ).json()
            assert [e["data"]["id"] for e in signals["data"]] == [endpoint["id"]]
            assert signals["data"][0]["data"]["status"] == "failing"
            assert failing_gauge() == await count_failing(pool) >= 1

            # It still receives new events; its first success makes it enabled again.
            receiver.status = 200
            await create_customers(client, 1)
            await drive(pool, endpoint["id"], dispatcher)
            recovered = (await client.get(f"/v1/webhook_endpoints/{endpoint['id']}")).json()
            assert recovered["status"] == "enabled"
            assert failing_gauge() == await count_failing(pool)
    assert [a.status for a in receiver.arrivals].count(200) == 1
