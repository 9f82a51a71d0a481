"""The API role's connections, opened on start-up and closed on shutdown, and the per-key
rate limiter that uses them.

The API starts even when Postgres or Kafka does not answer yet: a background task keeps
connecting (with backoff) until both are up, and meanwhile every request that needs the
missing dependency is answered 503 with ``Retry-After`` and ``/readyz`` says which one is
down. Redis connects lazily per command, so it is never "missing" — a command fails (503)
while Redis is away, and the next one after it returns reconnects. Once connected, the
clients reconnect by themselves (asyncpg's pool, aiokafka's producer, redis-py).

Once Postgres is connected, a task polls the API key epoch for as long as the process
runs (``KeyAuthenticator.watch``): the in-process key cache is dropped whenever a key was
revoked or its expiry changed anywhere. A role may add watches of its own (``watch``: the
ingest's meter epoch), started and stopped with that one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from domain.accounts import KeyAuthenticator
from domain.idempotency import RedisIdempotencyStore
from domain.itemmeta import ItemMetaStore
from domain.ratelimit import RateLimiter
from infra.db import create_pool
from infra.errors import DependencyUnavailable
from infra.kafka import create_producer
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings

__all__ = ["Services"]

log = logging.getLogger(__name__)

_RETRY_MIN_S = 0.2
_RETRY_MAX_S = 5.0
_PROBE_TIMEOUT_S = 2.0


class Services:
    """Everything a request handler may touch; ``start``/``stop`` bracket the process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._pipe: ScriptPipe | None = None
        self._producer: AIOKafkaProducer | None = None
        self._meta: ItemMetaStore | None = None
        self._idempotency: RedisIdempotencyStore | None = None
        self._auth: KeyAuthenticator | None = None
        self._auth_watch: asyncio.Task[None] | None = None
        self._watches: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self._watch_tasks: list[asyncio.Task[None]] = []
        self._connector: asyncio.Task[None] | None = None
        self._last_error: dict[str, str] = {}
        # Exists before start-up, so handlers can bind its methods once; it reaches Redis
        # and Postgres through the properties below, per lease.
        self.limiter = RateLimiter(settings, lambda: self.pipe, lambda: self.pool)

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DependencyUnavailable(
                "postgres", self._last_error.get("postgres", "not connected")
            )
        return self._pool

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise DependencyUnavailable("redis", "not started")
        return self._redis

    @property
    def pipe(self) -> ScriptPipe:
        if self._pipe is None:
            raise DependencyUnavailable("redis", "not started")
        return self._pipe

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise DependencyUnavailable("kafka", self._last_error.get("kafka", "not connected"))
        return self._producer

    @property
    def meta(self) -> ItemMetaStore:
        if self._meta is None:
            raise DependencyUnavailable("redis", "not started")
        return self._meta

    @property
    def idempotency(self) -> RedisIdempotencyStore:
        if self._idempotency is None:
            raise DependencyUnavailable("redis", "not started")
        return self._idempotency

    @property
    def auth(self) -> KeyAuthenticator:
        if self._auth is None:
            raise DependencyUnavailable(
                "postgres", self._last_error.get("postgres", "not connected")
            )
        return self._auth

    def watch(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``run()`` as a task from the moment Postgres is connected until ``stop``
        (a poll of an epoch: it must handle its own failures and never return)."""
        self._watches.append(run)
        if self._pool is not None:
            self._watch_tasks.append(asyncio.create_task(run()))

    async def start(self) -> None:
        """Connect what answers now; keep connecting the rest in the background."""
        s = self.settings
        self._redis = Redis.from_url(
            s.redis_url.get_secret_value(),
            decode_responses=False,
            socket_timeout=5,
            socket_connect_timeout=2,
            max_connections=256,
        )
        self._pipe = ScriptPipe(s.redis_url.get_secret_value(), timeout_s=5, connect_timeout_s=2)
        self._meta = ItemMetaStore(self._redis, s)
        self._idempotency = RedisIdempotencyStore(
            self._redis,
            self._pipe,
            ttl_s=s.idempotency_ttl_s,
            lease_s=s.idempotency_lease_s,
            namespace=s.key("idem2", ""),
        )
        if not await self._connect_once():
            self._connector = asyncio.create_task(self._keep_connecting())
        # What exists now (modules, the app, the clients: ~90k objects) lives as long as
        # the process. Out of the collector's way, a full collection scans only what
        # requests left behind — measured under load: 25-115 ms pauses became a few ms.
        gc.freeze()

    async def _connect_once(self) -> bool:
        """One attempt at whatever is not connected yet; True when everything is."""
        s = self.settings
        if self._pool is None:
            try:
                self._pool = await create_pool(s, min_size=2, max_size=20)
                self._auth = KeyAuthenticator(self._pool)
                # Revocations reach this process through the key epoch it polls.
                self._auth_watch = asyncio.create_task(self._auth.watch())
                self._watch_tasks.extend(asyncio.create_task(run()) for run in self._watches)
                self._last_error.pop("postgres", None)
            except DependencyUnavailable as exc:
                self._last_error["postgres"] = exc.detail
                log.warning("postgres unavailable (%s); retrying in the background", exc.detail)
        if self._producer is None:
            try:
                producer = await create_producer(s, linger_ms=0)
            except DependencyUnavailable as exc:
                self._last_error["kafka"] = exc.detail
                log.warning("kafka unavailable (%s); retrying in the background", exc.detail)
            else:
                try:
                    # First metadata request: creates the topic on brokers that auto-create.
                    await asyncio.wait_for(
                        producer.partitions_for(s.usage_topic), s.publish_timeout_s
                    )
                except Exception as exc:  # any failure here means "not ready yet"
                    await producer.stop()
                    self._last_error["kafka"] = f"{type(exc).__name__}: {exc}"
                    log.warning("kafka topic %s unavailable (%s); retrying", s.usage_topic, exc)
                else:
                    self._producer = producer
                    self._last_error.pop("kafka", None)
        return self._pool is not None and self._producer is not None

    async def _keep_connecting(self) -> None:
        delay = _RETRY_MIN_S
        while True:
            await asyncio.sleep(delay)
            if await self._connect_once():
                log.info("all dependencies connected")
                return
            delay = min(delay * 2, _RETRY_MAX_S)

    async def stop(self) -> None:
        """Flush the producer, then close Redis and Postgres; safe to call twice."""
        if self._connector is not None:
            connector, self._connector = self._connector, None
            connector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await connector
        if self._auth_watch is not None:
            watch, self._auth_watch = self._auth_watch, None
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        tasks, self._watch_tasks = self._watch_tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
        if self._idempotency is not None:
            # Settlements queued by the last requests (answered already) go out first.
            try:
                await asyncio.wait_for(self._idempotency.drain(), _PROBE_TIMEOUT_S)
            except TimeoutError:
                log.warning(
                    "idempotency settlements still queued at shutdown; their leases will expire"
                )
        if self._pipe is not None:
            pipe, self._pipe = self._pipe, None
            await pipe.close()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            self._auth = None
            await pool.close()

    async def readiness(self) -> dict[str, Any]:
        """Each dependency's state; the role is ready only when all answer."""
        checks: dict[str, Any] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                await asyncio.wait_for(probe(), timeout=_PROBE_TIMEOUT_S)
                checks[name] = "ok"
            except DependencyUnavailable as exc:
                checks[name] = f"unavailable: {exc.detail}"
            except Exception as exc:  # a readiness probe reports, never raises
                checks[name] = f"unavailable: {type(exc).__name__}"

        await check("postgres", lambda: self.pool.fetchval("SELECT 1"))
        await check("redis", lambda: self.redis.ping())
        # A fresh metadata round trip: cached partitions would say "ok" with the broker gone.
        await check("kafka", lambda: self.producer.client.fetch_all_metadata())
        return checks
