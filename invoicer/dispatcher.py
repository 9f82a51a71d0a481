"""The dispatcher role: deliver outbox events to webhook endpoints, at least once.

Deliveries are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease (``next_attempt_at``
pushed past the request timeout), so several dispatchers share the work without double
sends, and a crashed dispatcher's claims come back when the lease ends. Failures retry
with exponential backoff and jitter for up to ``webhook_max_age_s`` (3 days); then the
delivery is given up and its endpoint marked ``failing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

import asyncpg
import httpx
import orjson

from vinr.clock import now_s
from vinr.db import create_pool
from vinr.events import emit_event
from vinr.objects import render_event, render_webhook_endpoint
from vinr.settings import Settings
from vinr.signature import SIGNATURE_HEADER, sign
from vinr.telemetry import M

__all__ = ["Dispatcher", "retry_delay_s"]

log = logging.getLogger(__name__)

_CLAIM = """
UPDATE webhook_deliveries d SET next_attempt_at = $2 + $3, attempts = d.attempts + 1,
       first_attempt_at = coalesce(d.first_attempt_at, $2::bigint)
FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2
      ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due,
     events e, webhook_endpoints w
WHERE d.id = due.id AND e.id = d.event_id AND w.id = d.endpoint_id
RETURNING d.id, d.attempts, d.first_attempt_at, e.id AS event_id, e.type, e.data, e.created,
          e.livemode, e.account_id, w.id AS endpoint_id, w.url, w.secret, w.previous_secret,
          w.previous_secret_expires
"""


def retry_delay_s(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (1-based): 10 s doubling to a 6 h cap, jittered to
    50–100 % so a recovering endpoint is not hit by every retry at once."""
    base: float = min(10.0 * 2.0 ** (attempt - 1), 6 * 3600.0)
    jitter: float = (rng or random).random()
    return base * (0.5 + 0.5 * jitter)


class Dispatcher:
    def __init__(self, settings: Settings, *, pool: asyncpg.Pool | None = None,
                 client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._pool = pool
        self._own_pool = pool is None
        self._client = client
        self._own_client = client is None
        self._stopping = asyncio.Event()
        self._limit = asyncio.Semaphore(settings.webhook_concurrency)

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(self._settings, min_size=1, max_size=8)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._settings.webhook_timeout_s,
                                             follow_redirects=False)

    async def stop(self) -> None:
        self._stopping.set()
        if self._client is not None and self._own_client:
            client, self._client = self._client, None
            await client.aclose()
        if self._pool is not None and self._own_pool:
            pool, self._pool = self._pool, None
            await pool.close()

    async def __aenter__(self) -> Dispatcher:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                sent = await self.tick()
            except (OSError, asyncpg.PostgresError) as exc:
                log.error("dispatcher tick failed: %s; retrying", exc)
                sent = 0
            if not sent:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(),
                                           self._settings.dispatcher_poll_s)

    def _require(self) -> tuple[asyncpg.Pool, httpx.AsyncClient]:
        if self._pool is None or self._client is None:
            raise RuntimeError("dispatcher not started")
        return self._pool, self._client

    async def tick(self, limit: int = 200) -> int:
        """Claim and deliver what is due; the number of deliveries attempted."""
        pool, _ = self._require()
        lease = self._settings.webhook_timeout_s + 5
        rows = await pool.fetch(_CLAIM, limit, time.time(), lease)
        if rows:
            await asyncio.gather(*(self._deliver(r) for r in rows))
        pending = await pool.fetchval(
            "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'")
        M.webhook_pending.set(pending)
        return len(rows)

    async def _deliver(self, row: asyncpg.Record) -> None:
        pool, client = self._require()
        event = {"id": row["event_id"], "type": row["type"], "data": row["data"],
                 "created": row["created"], "livemode": row["livemode"]}
        body = orjson.dumps(render_event(event))
        now = now_s()
        secrets = [row["secret"]]
        if row["previous_secret"] and (row["previous_secret_expires"] or 0) > now:
            secrets.append(row["previous_secret"])
        headers = {"content-type": "application/json", "user-agent": "vinr-webhooks/1",
                   SIGNATURE_HEADER: sign(secrets[0], body, now, *secrets[1:])}
        status: int | None = None
        error: str | None = None
        started = time.perf_counter()
        async with self._limit:
            try:
                response = await client.post(row["url"], content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        elapsed = time.perf_counter() - started
        M.webhook_seconds.observe(elapsed)
        ok = status is not None and 200 <= status < 300
        M.webhook_deliveries.labels("delivered" if ok else "failed").inc()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error,"
                " duration_ms, created) VALUES ($1, $2, $3, $4, $5, $6)"
                " ON CONFLICT DO NOTHING",
                row["id"], row["attempts"], status, error, int(elapsed * 1000), now)
            if ok:
                await conn.execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $2,"
                    " last_status_code = $3, last_error = NULL WHERE id = $1",
                    row["id"], now, status)
                return
            age = now - (row["first_attempt_at"] or now)
            if age + retry_delay_s(row["attempts"]) > self._settings.webhook_max_age_s:
                await conn.execute(
                    "UPDATE webhook_deliveries SET status = 'failed', last_status_code = $2,"
                    " last_error = $3 WHERE id = $1", row["id"], status, error)
                await self._mark_failing(conn, row["endpoint_id"])
                return
            await conn.execute(
                "UPDATE webhook_deliveries SET next_attempt_at = $2, last_status_code = $3,"
                " last_error = $4 WHERE id = $1",
                row["id"], time.time() + retry_delay_s(row["attempts"]), status, error)

    async def _mark_failing(self, conn: asyncpg.Connection[Any], endpoint_id: str) -> None:
        endpoint = await conn.fetchrow(
            "UPDATE webhook_endpoints SET status = 'failing' WHERE id = $1"
            " AND status = 'enabled' RETURNING *", endpoint_id)
        if endpoint is None:
            return
        log.error("webhook endpoint %s marked failing after %d s of failed deliveries",
                  endpoint_id, self._settings.webhook_max_age_s)
        await emit_event(conn, endpoint["account_id"], endpoint["livemode"],
                         "webhook_endpoint.disabled", render_webhook_endpoint(endpoint))
        M.webhook_failing.inc()
