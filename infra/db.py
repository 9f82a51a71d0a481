"""Postgres access: the pool factory and the migration runner behind ``vinr migrate``."""

from __future__ import annotations

import logging
from importlib import resources
from typing import Any

import asyncpg
import orjson

from infra.errors import DependencyUnavailable
from infra.settings import Settings

__all__ = ["apply_migrations", "create_pool", "ensure_database", "migration_files"]

log = logging.getLogger(__name__)

_MIGRATION_LOCK = 0x76696E72  # "vinr": one migrator at a time across processes


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            schema="pg_catalog",
        )


async def create_pool(settings: Settings, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb with orjson.

    Raises:
        DependencyUnavailable: Postgres does not answer.
    """
    try:
        pool = await asyncpg.create_pool(
            settings.database_url.get_secret_value(),
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            command_timeout=60,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        raise DependencyUnavailable("postgres", str(exc)) from exc
    return pool


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database when missing (connecting to ``postgres``); True if created."""
    target = dsn.rsplit("/", 1)
    if len(target) != 2 or not target[1]:
        return False
    name = target[1].split("?", 1)[0]
    admin = f"{target[0]}/postgres"
    conn = await asyncpg.connect(admin)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        await conn.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await conn.close()


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every numbered file in ``infra/migrations``, in order."""
    found = []
    for entry in resources.files("infra.migrations").iterdir():
        if entry.name.endswith(".sql") and entry.name[:3].isdigit():
            found.append((int(entry.name[:3]), entry.name, entry.read_text()))
    return sorted(found)


async def apply_migrations(conn: asyncpg.Connection[Any]) -> list[str]:
    """Apply the migrations not yet recorded; idempotent and safe to run concurrently."""
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL"
            " DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
