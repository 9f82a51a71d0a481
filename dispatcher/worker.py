"""The dispatcher role: deliver outbox events to webhook endpoints, at least once.

Deliveries are claimed with ``FOR UPDATE SKIP LOCKED`` and a lease (``next_attempt_at``
pushed past the request timeout), so several dispatchers share the work without double
sends, and a crashed dispatcher's claims come back when the lease ends. A tick claims no
more than it can send at once (``webhook_concurrency``), and every request is bounded by
``webhook_timeout_s`` in total, so a claim is always resolved within its lease.

Each claim increments the delivery's ``attempts``; the outcome is written only while that
number still holds (a fence), so a late result from an expired lease cannot overwrite a
newer attempt's. Failures retry with exponential backoff and jitter for up to
``webhook_max_age_s`` (3 days) from the first attempt; then the delivery is ``failed`` and
its endpoint marked ``failing`` with a ``webhook_endpoint.disabled`` event. A failing
endpoint keeps receiving new events and is ``enabled`` again after its next success.

Before every send the target is checked again (``domain/webhook_targets.py``: DNS can
change after the endpoint was accepted) and the request goes to the address that was
checked, with the URL's own name kept in the ``Host`` header and the TLS server name. A
refused target fails like an unreachable one: the attempt is recorded with the reason and
retried on the schedule. Redirects are not followed (a 3xx is a failed delivery) and no
more than ``webhook_max_response_bytes`` of an answer is read.

Time comes from an injectable ``now`` and the retry schedule from an injectable policy, so
tests can step through days of retries without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import httpx
import orjson

from domain.events import emit_event
from domain.objects import render_event, render_webhook_endpoint
from domain.signature import SIGNATURE_HEADER, sign
from domain.store import delivery_queue as store
from domain.webhook_targets import Resolver, Verdict, check_target
from infra.db import create_pool
from infra.lifecycle import PollingService
from infra.resolver import resolve
from infra.settings import Settings
from infra.telemetry import M

__all__ = ["Clock", "Dispatcher", "RetryPolicy", "retry_delay_s"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]
RetryPolicy = Callable[[int], float]

# Seconds beyond the request timeout before a claimed delivery may be claimed again.
_LEASE_MARGIN_S = 5.0


def retry_delay_s(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before retry ``attempt`` (1-based): 10 s doubling to a 6 h cap, jittered to
    50–100 % so a recovering endpoint is not hit by every retry at once."""
    base: float = min(10.0 * 2.0 ** (min(attempt, 64) - 1), 6 * 3600.0)
    jitter: float = (rng or random).random()
    return base * (0.5 + 0.5 * jitter)


class Dispatcher(PollingService):
    """Delivers webhooks; ``run()`` polls, ``tick()`` does one round (tests, bursts).

    Args:
        settings: ``webhook_timeout_s``, ``webhook_max_age_s``, ``webhook_concurrency``,
            ``dispatcher_poll_s`` are used.
        pool: a shared Postgres pool (else one is opened on ``start``).
        client: a shared ``httpx.AsyncClient`` (else one is opened on ``start``).
        now: the clock, unix seconds (``time.time``); it schedules retries, measures the
            3-day window and dates signatures.
        retry_delay_s: seconds before retry ``n`` (1-based); exponential with jitter.
        resolver: host, port → IP addresses (the system resolver); every address is
            checked before a send.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pool: asyncpg.Pool | None = None,
        client: httpx.AsyncClient | None = None,
        now: Clock = time.time,
        retry_delay_s: RetryPolicy = retry_delay_s,
        resolver: Resolver = resolve,
    ) -> None:
        super().__init__()
        self.poll_s = settings.dispatcher_poll_s
        self.name = "dispatcher"
        self._settings = settings
        self._pool = pool
        self._own_pool = pool is None
        self._client = client
        self._own_client = client is None
        self._now = now
        self._retry_delay_s = retry_delay_s
        self._resolver = resolver

    async def start(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(self._settings, min_size=1, max_size=8)
        if self._client is None:
            limits = httpx.Limits(max_connections=self._settings.webhook_concurrency)
            self._client = httpx.AsyncClient(
                timeout=self._settings.webhook_timeout_s, follow_redirects=False, limits=limits
            )

    async def stop(self) -> None:
        """Idempotent; close what this dispatcher opened (claims in flight lapse with their
        lease and are delivered by whichever dispatcher runs next)."""
        self._stopping.set()
        if self._client is not None and self._own_client:
            client, self._client = self._client, None
            await client.aclose()
        if self._pool is not None and self._own_pool:
            pool, self._pool = self._pool, None
            await pool.close()

    def _require(self) -> tuple[asyncpg.Pool, httpx.AsyncClient]:
        if self._pool is None or self._client is None:
            raise RuntimeError("dispatcher not started")
        return self._pool, self._client

    async def tick(self, limit: int | None = None) -> int:
        """Claim what is due (at most ``webhook_concurrency``, or ``limit``) and deliver it
        concurrently; the number of deliveries claimed. Also refreshes the gauges."""
        pool, _ = self._require()
        size = min(limit or self._settings.webhook_concurrency, self._settings.webhook_concurrency)
        lease_s = self._settings.webhook_timeout_s + _LEASE_MARGIN_S
        rows = await store.claim(pool, size, self._now(), lease_s)
        results = await asyncio.gather(*(self._deliver(r) for r in rows), return_exceptions=True)
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                log.error(
                    "delivery %s: recording the outcome failed: %r; it is retried when"
                    " its lease ends",
                    row["id"],
                    result,
                )
        counts = await store.gauges(pool, self._now())
        M.webhook_pending.set(counts["pending"])
        M.webhook_failing.set(counts["failing"])
        M.webhook_oldest_due.set(counts["oldest_due_s"])
        return len(rows)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], *, live: bool
    ) -> tuple[int | None, str | None]:
        """Check the target, then POST to the checked address, within ``webhook_timeout_s``
        in total: (status, None) on a 2xx, else (status or None, error)."""
        _, client = self._require()
        timeout_s = self._settings.webhook_timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                verdict = await check_target(url, live=live, resolver=self._resolver)
                if verdict.refused is not None:
                    return None, f"target refused: {verdict.refused}"[:500]
                request = _pinned(client, url, verdict, body, headers)
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    await _read_capped(response, self._settings.webhook_max_response_bytes)
                finally:
                    await response.aclose()
        except TimeoutError:
            return None, f"timed out after {timeout_s:g} s"
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        status = response.status_code
        if 300 <= status < 400:
            location = response.headers.get("location", "")
            return status, f"redirect to '{location}' not followed"[:500]
        return status, None

    async def _deliver(self, row: asyncpg.Record) -> None:
        pool, _ = self._require()
        fence = (row["id"], row["attempts"])
        if row["endpoint_status"] == "disabled":
            await store.cancel_claimed(pool, *fence)
            return
        event = {
            "id": row["event_id"],
            "type": row["type"],
            "data": row["data"],
            "created": row["created"],
            "livemode": row["livemode"],
        }
        body = orjson.dumps(render_event(event))
        signed_at = int(self._now())
        secrets = [row["secret"]]
        if row["previous_secret"] and (row["previous_secret_expires"] or 0) > signed_at:
            secrets.append(row["previous_secret"])
        headers = {
            "content-type": "application/json",
            "user-agent": "vinr-webhooks/1",
            SIGNATURE_HEADER: sign(secrets[0], body, signed_at, *secrets[1:]),
        }
        started = time.perf_counter()
        status, error = await self._post(row["url"], body, headers, live=row["livemode"])
        elapsed = time.perf_counter() - started
        M.webhook_seconds.observe(elapsed)
        ok = status is not None and 200 <= status < 300
        # Ids only: the URL may carry the receiver's own token, the headers carry signatures.
        log.debug(
            "delivery %s of %s to %s, attempt %d: %s in %d ms",
            row["id"],
            row["event_id"],
            row["endpoint_id"],
            row["attempts"],
            status if error is None else f"{status or 'no answer'} ({error})",
            elapsed * 1000,
        )
        M.webhook_deliveries.labels("delivered" if ok else "failed").inc()
        now = self._now()
        async with pool.acquire() as conn, conn.transaction():
            await store.record_attempt(
                conn,
                *fence,
                status_code=status,
                error=error,
                duration_ms=int(elapsed * 1000),
                created=int(now),
            )
            if ok:
                await store.mark_delivered(conn, *fence, int(now), status)
                if row["endpoint_status"] == "failing":
                    await store.endpoint_recovered(conn, row["endpoint_id"])
                return
            delay = self._retry_delay_s(row["attempts"])
            age = now - (row["first_attempt_at"] or now)
            if age + delay > self._settings.webhook_max_age_s:
                if await store.mark_failed(conn, *fence, status, error):
                    await self._mark_failing(conn, row["endpoint_id"])
                return
            await store.schedule_retry(conn, *fence, now + delay, status, error)

    async def _mark_failing(self, conn: asyncpg.Connection[Any], endpoint_id: str) -> None:
        endpoint = await store.mark_endpoint_failing(conn, endpoint_id)
        if endpoint is None:
            return
        log.error(
            "webhook endpoint %s marked failing after %d s of failed deliveries",
            endpoint_id,
            self._settings.webhook_max_age_s,
        )
        await emit_event(
            conn,
            endpoint["account_id"],
            endpoint["livemode"],
            "webhook_endpoint.disabled",
            render_webhook_endpoint(endpoint),
        )


def _pinned(
    client: httpx.AsyncClient,
    url: str,
    verdict: Verdict,
    body: bytes,
    headers: dict[str, str],
) -> httpx.Request:
    """The POST to ``url`` sent to the first checked address: the URL's host is swapped
    for that address, and its name kept as the ``Host`` header and the TLS server name
    (so the certificate is still verified against the name).

    The client pools connections by address, not by name, so an https request by name
    asks for its connection to be closed afterwards: a connection whose certificate was
    verified for one name is never reused for another name on the same address."""
    target = httpx.URL(url)
    address = verdict.addresses[0]
    pinned = target.copy_with(host=address)
    sent = {**headers, "host": target.netloc.decode("ascii")}
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and target.host != address:
        extensions["sni_hostname"] = target.host
        sent["connection"] = "close"
    return client.build_request("POST", pinned, content=body, headers=sent, extensions=extensions)


async def _read_capped(response: httpx.Response, cap: int) -> int:
    """Read at most about ``cap`` bytes of the answer (as sent, undecoded); what lies
    beyond is never read, the connection is closed instead. The number of bytes read."""
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= cap:
            break
    return read
