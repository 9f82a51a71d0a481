"""The API role's connections, opened on start-up and closed on shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from redis.exceptions import RedisError

from ingest.auth import KeyAuthenticator
from ingest.idempotency import RedisIdempotencyStore
from vinr.db import create_pool
from vinr.errors import DependencyUnavailable
from vinr.itemmeta import ItemMetaStore
from vinr.kafka import create_producer
from vinr.settings import Settings

__all__ = ["Services"]

log = logging.getLogger(__name__)


class Services:
    """Everything a request handler may touch; ``start``/``stop`` bracket the process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._producer: AIOKafkaProducer | None = None
        self._meta: ItemMetaStore | None = None
        self._idempotency: RedisIdempotencyStore | None = None
        self._auth: KeyAuthenticator | None = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DependencyUnavailable("postgres", "not started")
        return self._pool

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise DependencyUnavailable("redis", "not started")
        return self._redis

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise DependencyUnavailable("kafka", "not started")
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
            raise DependencyUnavailable("postgres", "not started")
        return self._auth

    async def start(self) -> None:
        s = self.settings
        self._pool = await create_pool(s, min_size=2, max_size=20)
        self._redis = Redis.from_url(s.redis_url.get_secret_value(), decode_responses=False,
                                     socket_timeout=5, socket_connect_timeout=2,
                                     max_connections=256)
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            await self.stop()
            raise DependencyUnavailable("redis", str(exc)) from exc
        self._meta = ItemMetaStore(self._redis, s)
        self._idempotency = RedisIdempotencyStore(
            self._redis, ttl_s=s.idempotency_ttl_s, lease_s=s.idempotency_lease_s)
        self._auth = KeyAuthenticator(self._pool)
        try:
            self._producer = await create_producer(s)
            # First metadata request: creates the topic on brokers that auto-create it.
            await self._producer.partitions_for(s.usage_topic)
        except DependencyUnavailable:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Flush the producer, then close Redis and Postgres; safe to call twice."""
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def readiness(self) -> dict[str, Any]:
        """Each dependency's state; the role is ready only when all answer."""
        checks: dict[str, Any] = {}

        async def check(name: str, probe: Any) -> None:
            try:
                await asyncio.wait_for(probe(), timeout=2)
                checks[name] = "ok"
            except Exception as exc:  # a readiness probe reports, never raises
                checks[name] = f"unavailable: {type(exc).__name__}"

        await check("postgres", lambda: self.pool.fetchval("SELECT 1"))
        await check("redis", lambda: self.redis.ping())
        await check("kafka", lambda: self.producer.partitions_for(self.settings.usage_topic))
        return checks
