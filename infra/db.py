"""Postgres access: the pool factory and the migration runner behind ``vinr migrate``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg
import orjson

from infra.errors import DependencyUnavailable
from infra.progress import Report, ignore
from infra.settings import Settings
from infra.telemetry import M

__all__ = [
    "MigrationStatus",
    "admin_dsn",
    "apply_migrations",
    "create_pool",
    "ensure_database",
    "migration_files",
    "migration_status",
    "server_version",
]

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
    """A pool whose connections decode json/jsonb with orjson, counted by the
    ``vinr_db_pool_connections_*`` gauges.

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
    M.db_pools.track(pool)
    return pool


def admin_dsn(dsn: str) -> tuple[str, str] | None:
    """(the DSN of the server's ``postgres`` database, the DSN's own database name); None
    when the DSN names no database."""
    target = dsn.rsplit("/", 1)
    if len(target) != 2 or not target[1]:
        return None
    return f"{target[0]}/postgres", target[1].split("?", 1)[0]


async def ensure_database(dsn: str) -> bool:
    """Create the DSN's database when missing (connecting to ``postgres``); True if created."""
    split = admin_dsn(dsn)
    if split is None:
        return False
    admin, name = split
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


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    """The database's schema against the migration files of this version of vinr."""

    applied: tuple[str, ...]  # recorded in the database and known here, in order
    pending: tuple[str, ...]  # files not yet applied, in the order ``vinr migrate`` runs them
    unknown: tuple[str, ...]  # recorded in the database, no file here: a newer vinr's

    @property
    def current(self) -> bool:
        return not self.pending and not self.unknown


async def migration_status(conn: asyncpg.Connection[Any]) -> MigrationStatus:
    """Which migrations the database has, lacks, and has that no file here knows."""
    recorded: dict[int, str] = {}
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        recorded = {
            r["version"]: r["name"]
            for r in await conn.fetch("SELECT version, name FROM schema_migrations")
        }
    files = migration_files()
    known = {version for version, _, _ in files}
    return MigrationStatus(
        applied=tuple(name for version, name, _ in files if version in recorded),
        pending=tuple(name for version, name, _ in files if version not in recorded),
        unknown=tuple(recorded[v] for v in sorted(recorded) if v not in known),
    )


async def server_version(conn: asyncpg.Connection[Any]) -> tuple[int, str]:
    """The server's version as a number (150020 for 15.20) and as it names itself."""
    number = int(await conn.fetchval("SELECT current_setting('server_version_num')"))
    return number, str(await conn.fetchval("SELECT current_setting('server_version')"))


async def apply_migrations(conn: asyncpg.Connection[Any], progress: Report = ignore) -> list[str]:
    """Apply the migrations not yet recorded; idempotent and safe to run concurrently.

    ``progress`` hears (applied so far, pending in all) after each one.
    """
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL"
            " DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        pending = [m for m in migration_files() if m[0] not in done]
        progress(0, len(pending))
        for version, name, sql in pending:
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            log.info("applied migration %s", name)
            applied.append(name)
            progress(len(applied), len(pending))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied
