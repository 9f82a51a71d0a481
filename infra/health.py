"""Readiness of a worker role's dependencies, for its ``/readyz``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from infra.settings import Settings

__all__ = ["DependencyProbe"]

_TIMEOUT_S = 2.0


class DependencyProbe:
    """Opens one small connection per dependency and checks each on demand."""

    def __init__(self, settings: Settings, needs: tuple[str, ...]) -> None:
        self._settings = settings
        self._needs = needs
        self._pool: asyncpg.Pool | None = None
        self._redis: Redis | None = None
        self._producer: AIOKafkaProducer | None = None

    async def _postgres(self) -> None:
        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._settings.database_url.get_secret_value(), min_size=0, max_size=1
            )
        await self._pool.fetchval("SELECT 1")

    async def _redis_ping(self) -> None:
        if self._redis is None:
            self._redis = Redis.from_url(
                self._settings.redis_url.get_secret_value(), socket_timeout=_TIMEOUT_S
            )
        await self._redis.ping()

    async def _kafka(self) -> None:
        if self._producer is None:
            producer = AIOKafkaProducer(bootstrap_servers=self._settings.kafka_bootstrap)
            await producer.start()
            self._producer = producer
        await self._producer.partitions_for(self._settings.usage_topic)

    async def check(self) -> dict[str, str]:
        probes: dict[str, Callable[[], Awaitable[None]]] = {
            "postgres": self._postgres,
            "redis": self._redis_ping,
            "kafka": self._kafka,
        }
        results: dict[str, str] = {}
        for name in self._needs:
            try:
                await asyncio.wait_for(probes[name](), _TIMEOUT_S)
                results[name] = "ok"
            except Exception as exc:  # a probe reports, never raises
                results[name] = f"unavailable: {type(exc).__name__}"
        return results

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self._producer is not None:
                await self._producer.stop()
            if self._redis is not None:
                await self._redis.aclose()
            if self._pool is not None:
                await self._pool.close()

    async def __aenter__(self) -> DependencyProbe:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
