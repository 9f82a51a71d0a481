"""Isolated environments on real services, for tests and benchmarks.

Each environment gets its own database, Redis key prefix, topic and consumer group, so
runs never see each other's data; the dev broker is started as a subprocess when
``VINR_KAFKA_BOOTSTRAP`` is unset.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import asyncpg
from redis.asyncio import Redis

from infra.db import apply_migrations, ensure_database
from infra.settings import Settings

__all__ = [
    "dev_broker",
    "free_port",
    "isolated_settings",
    "postgres_root",
    "purge_redis_prefix",
    "redis_url",
    "role_env",
]

_LOCAL_POSTGRES = "postgresql://root@127.0.0.1:5432"
_LOCAL_REDIS = "redis://127.0.0.1:6379/0"


def postgres_root() -> str:
    """The server isolated databases are created on (no database name): the local Postgres,
    or ``VINR_TEST_DATABASE_ROOT`` (a container's, say). Read at call time, so a test
    session can point it elsewhere before its first environment."""
    return os.environ.get("VINR_TEST_DATABASE_ROOT", _LOCAL_POSTGRES)


def redis_url() -> str:
    return os.environ.get("VINR_REDIS_URL", _LOCAL_REDIS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def role_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a ``vinr …`` subprocess in this isolated env: the caller's
    environment without its ``VINR_*``, plus these settings and ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VINR_")}
    env.update(
        {
            "VINR_DATABASE_URL": settings.database_url.get_secret_value(),
            "VINR_REDIS_URL": settings.redis_url.get_secret_value(),
            "VINR_REDIS_PREFIX": settings.redis_prefix,
            "VINR_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
            "VINR_USAGE_TOPIC": settings.usage_topic,
            "VINR_CONSUMER_GROUP": settings.consumer_group,
        }
    )
    env.update(extra)
    return env


@contextmanager
def dev_broker() -> Iterator[str]:
    """The configured Kafka, or a ``vinr devbroker`` subprocess for the duration."""
    configured = os.environ.get("VINR_KAFKA_BOOTSTRAP")
    if configured:
        yield configured
        return
    proc = subprocess.Popen(
        [sys.executable, "-m", "vinr.cli", "devbroker"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if proc.stdout is None:
            raise RuntimeError("the dev broker has no stdout")
        address = proc.stdout.readline().strip()
        if not address:
            raise RuntimeError("the dev broker did not start")
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def purge_redis_prefix(prefix: str, url: str | None = None) -> None:
    """Delete this environment's keys with SCAN (never KEYS)."""
    redis = Redis.from_url(url or redis_url())
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await redis.delete(*batch)
                batch.clear()
        if batch:
            await redis.delete(*batch)
    finally:
        await redis.aclose()


@asynccontextmanager
async def isolated_settings(
    broker: str, *, label: str = "test", **overrides: Any
) -> AsyncIterator[Settings]:
    """A migrated database ``vinr_<label>_<run>`` and settings pointing at it; dropped after."""
    run = uuid.uuid4().hex[:8]
    name = f"vinr_{label}_{run}"
    root = postgres_root()
    dsn = f"{root}/{name}"
    await ensure_database(dsn)
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()
    values: dict[str, Any] = {
        "database_url": dsn,
        "redis_url": redis_url(),
        "redis_prefix": f"vinr{label}:{run}:",
        "kafka_bootstrap": broker,
        "usage_topic": f"vinr.usage.{label}.{run}",
        "consumer_group": f"vinr-{label}-{run}",
    }
    values.update(overrides)
    settings = Settings(**values)
    try:
        yield settings
    finally:
        await purge_redis_prefix(settings.redis_prefix, settings.redis_url.get_secret_value())
        admin = await asyncpg.connect(f"{root}/postgres")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
