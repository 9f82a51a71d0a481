"""Webhook endpoints for tests: a recording receiver, and queries over the outbox and its
deliveries."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from vinr_sdk import verify

from dispatcher.worker import Dispatcher
from infra.asgi import read_body
from tests.support.api import post


@dataclass
class Arrival:
    body: bytes
    signature: str | None
    status: int | None = None  # what the endpoint answered; None while held


class Receiver:
    """A webhook endpoint: records every request; answers 500 to the first ``fail_first``
    requests, then ``status``; while ``hold`` is clear, requests wait before answering."""

    def __init__(self, *, fail_first: int = 0, status: int = 200, delay_s: float = 0.0) -> None:
        self.arrivals: list[Arrival] = []
        self.fail_first = fail_first
        self.status = status
        self.delay_s = delay_s
        self.hold = asyncio.Event()
        self.hold.set()
        self.waiting = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive, 1 << 20)
        signature = dict(scope["headers"]).get(b"x-vinr-signature")
        arrival = Arrival(body, signature.decode() if signature else None)
        self.arrivals.append(arrival)
        if not self.hold.is_set():
            self.waiting += 1
            await self.hold.wait()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = (
            500
            if len([a for a in self.arrivals if a.status is not None]) < self.fail_first
            else self.status
        )
        arrival.status = status
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"OK" if status < 300 else b"no"})

    def by_event(self, secret: str) -> dict[str, list[Arrival]]:
        """Arrivals per event id, each checked with the Python SDK (raises if one fails)."""
        out: dict[str, list[Arrival]] = {}
        for arrival in self.arrivals:
            event = verify(arrival.body, arrival.signature, secret)
            out.setdefault(event.id, []).append(arrival)
        return out


async def endpoint_for(
    client: httpx.AsyncClient, url: str, events: tuple[str, ...] = ("customer.created",)
) -> dict[str, Any]:
    return await post(client, "/v1/webhook_endpoints", {"url": url, "enabledEvents": list(events)})


async def create_customers(client: httpx.AsyncClient, count: int) -> None:
    for i in range(count):
        await post(client, "/v1/customers", {"name": f"customer {i}"})


async def all_events(client: httpx.AsyncClient, type_: str) -> dict[str, dict[str, Any]]:
    """Every event of the type in this account, by id (following the cursor)."""
    found: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {"type": type_, "limit": 100}
    while True:
        page = (await client.get("/v1/events", params=params)).json()
        found.update({e["id"]: e for e in page["data"]})
        if not page["hasMore"]:
            return found
        params["startingAfter"] = page["data"][-1]["id"]


async def deliveries(pool: asyncpg.Pool, endpoint_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id", endpoint_id
        )
    )


async def attempts(pool: asyncpg.Pool, delivery_id: str) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt", delivery_id
        )
    )


async def drive(
    pool: asyncpg.Pool, endpoint_id: str, *dispatchers: Dispatcher, max_rounds: int = 100
) -> list[list[int]]:
    """Tick the dispatchers together until the endpoint has nothing pending; the number each
    claimed per round."""
    rounds: list[list[int]] = []
    for _ in range(max_rounds):
        if not any(r["status"] == "pending" for r in await deliveries(pool, endpoint_id)):
            return rounds
        rounds.append(list(await asyncio.gather(*(d.tick() for d in dispatchers))))
    raise AssertionError(f"deliveries to {endpoint_id} still pending after {max_rounds} rounds")


def no_wait(attempt: int) -> float:
    return 0.0


def assert_retries_only(
    rows: list[asyncpg.Record],
    history: dict[str, list[asyncpg.Record]],
    arrived: dict[str, list[Arrival]],
) -> None:
    """Each delivery ended with one success, after failures only; the endpoint saw exactly
    the attempts that reached it (so every duplicate is a retry)."""
    for row in rows:
        tries = history[row["id"]]
        assert [a["attempt"] for a in tries] == list(range(1, row["attempts"] + 1))
        assert tries[-1]["status_code"] == 200
        assert all(a["status_code"] != 200 for a in tries[:-1])
        reached = [a for a in tries if a["status_code"] is not None]
        got = arrived[row["event_id"]]
        assert [a.status for a in got] == [a["status_code"] for a in reached]
