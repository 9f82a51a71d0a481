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


# jsonb's binary form is a version byte, then the JSON text; json's is the text alone.
_JSONB_VERSION = b"\x01"


def _encode_jsonb(value: Any) -> bytes:
    return _JSONB_VERSION + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    if data[:1] != _JSONB_VERSION:
        raise ValueError(f"unknown jsonb binary format version {data[:1]!r}")
    return orjson.loads(memoryview(data)[1:])


async def _init_connection(conn: asyncpg.Connection[Any]) -> None:
    """Every role's connections read and write json and jsonb alike: orjson, in the binary
    format, so ``COPY`` (always binary) can write jsonb columns (the outbox does) and no
    value takes a detour through ``str``."""
    await conn.set_type_codec(
        "jsonb",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        schema="pg_catalog",
        format="binary",
    )
    await conn.set_type_codec(
        "json", encoder=orjson.dumps, decoder=orjson.loads, schema="pg_catalog", format="binary"
    )


async def _session_settings(dsn: str) -> dict[str, str]:
    """Settings every pooled session starts with (they survive the pool's ``RESET ALL``):
    new TOAST values compressed with lz4 where the server has it. An outbox payload (~2 KB,
    just over the TOAST threshold) is compressed on every insert, lz4 in a fraction of
    pglz's time; values of either kind read back the same."""
    conn = await asyncpg.connect(dsn)
    try:
        lz4 = await conn.fetchval(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
    finally:
        await conn.close()
    return {"default_toast_compression": "lz4"} if lz4 else {}


async def create_pool(settings: Settings, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    """A pool whose connections read and write json/jsonb with orjson (``_init_connection``)
    and start with ``_session_settings``, counted by the ``vinr_db_pool_connections_*``
    gauges.

    Raises:
        DependencyUnavailable: Postgres does not answer.
    """
    dsn = settings.database_url.get_secret_value()
    try:
        pool = await asyncpg.create_pool(
            dsn,
            server_settings=await _session_settings(dsn),
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
