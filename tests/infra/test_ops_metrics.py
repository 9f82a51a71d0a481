"""The gauges and counters that deploy/prometheus's alerts and the saturation panels read,
against real services: pool use, the in-flight cap, the webhook queue's age, the
invoicer's last pass and missed watermarks."""

from __future__ import annotations

import time

import asyncpg
import httpx
from prometheus_client import REGISTRY

from dispatcher.worker import Dispatcher
from domain.store import delivery_queue
from domain.watermark import Watermark
from infra.db import create_pool
from infra.devenv import free_port
from infra.settings import Settings
from infra.telemetry import M
from invoicer.worker import Invoicer
from tests.support.server import LiveServer
from tests.support.webhooks import Receiver, create_customers, deliveries, endpoint_for


def sample(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None, f"{name} is not exported"
    return value


async def test_pool_gauges_count_acquired_connections_of_open_pools(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    in_use, size_max = (
        sample("vinr_db_pool_connections_in_use"),
        sample("vinr_db_pool_connections_max"),
    )
    own = await create_pool(settings, min_size=1, max_size=3)
    try:
        assert sample("vinr_db_pool_connections_max") == size_max + 3
        assert sample("vinr_db_pool_connections_in_use") == in_use
        async with own.acquire(), own.acquire():
            assert sample("vinr_db_pool_connections_in_use") == in_use + 2
        assert sample("vinr_db_pool_connections_in_use") == in_use
    finally:
        await own.close()
    assert sample("vinr_db_pool_connections_max") == size_max
    assert sample("vinr_db_pool_connections_in_use") == in_use


async def test_the_in_flight_cap_is_exported_beside_the_count(api: str, settings: Settings) -> None:
    assert sample("vinr_ingest_inflight_limit") == settings.max_inflight_requests
    assert 0 <= sample("vinr_ingest_inflight") <= settings.max_inflight_requests


def responses(plane: str, status: str) -> float:
    labels = {"plane": plane, "status": status}
    return REGISTRY.get_sample_value("vinr_api_responses_total", labels) or 0.0


async def test_control_plane_and_dashboard_responses_are_counted_by_status(
    client: httpx.AsyncClient,
) -> None:
    before = {
        key: responses(*key)
        for key in (("control", "200"), ("control", "404"), ("dashboard", "200"))
    }
    assert (await client.get("/v1/customers")).status_code == 200
    assert (await client.get("/v1/customers/cus_missing")).status_code == 404
    assert (await client.get("/dashboard/login")).status_code == 200
    assert responses("control", "200") == before["control", "200"] + 1
    assert responses("control", "404") == before["control", "404"] + 1
    assert responses("dashboard", "200") == before["dashboard", "200"] + 1


async def test_a_watermark_wait_that_times_out_is_counted(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    nobody = settings.model_copy(update={"consumer_group": f"unread-{time.time_ns()}"})
    watermark = Watermark(nobody, pool)
    missed = sample("vinr_invoicer_watermark_missed_total")
    assert not await watermark.wait({0: 1}, timeout_s=0.05)
    assert sample("vinr_invoicer_watermark_missed_total") == missed + 1
    assert await watermark.wait({0: 0}, timeout_s=0.05)  # nothing to wait for: reached
    assert sample("vinr_invoicer_watermark_missed_total") == missed + 1


async def test_the_invoicer_stamps_each_finished_pass(invoicer: Invoicer) -> None:
    before = time.time()
    await invoicer.tick()
    assert before <= sample("vinr_invoicer_last_pass_timestamp_seconds") <= time.time()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def test_queue_age_is_how_long_the_most_overdue_delivery_has_been_due(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = Receiver(status=200)
    async with LiveServer(receiver, free_port()) as hook:
        endpoint = await endpoint_for(client, hook.url + "/")
        await create_customers(client, 1)
        (row,) = await deliveries(pool, endpoint["id"])
        due = row["next_attempt_at"]

        # The queue is the whole database's: other deliveries may be older than ours.
        now = due + 30
        others = await pool.fetch(
            "SELECT next_attempt_at FROM webhook_deliveries"
            " WHERE status = 'pending' AND next_attempt_at <= $1",
            now,
        )
        oldest = max(now - r["next_attempt_at"] for r in others)
        assert oldest >= 30
        assert (await delivery_queue.gauges(pool, now))["oldest_due_s"] == oldest
        assert (await delivery_queue.gauges(pool, due - 3600))["oldest_due_s"] == 0

        # The dispatcher publishes it after each round; an hour before ours, nothing is due.
        M.webhook_oldest_due.set(123)
        async with Dispatcher(settings, pool=pool, now=Clock(due - 3600)) as dispatcher:
            assert await dispatcher.tick() == 0
        assert sample("vinr_webhook_oldest_due_seconds") == 0
        assert (await deliveries(pool, endpoint["id"]))[0]["status"] == "pending"
