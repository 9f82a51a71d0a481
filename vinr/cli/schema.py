"""``vinr migrate``: the schema, from the numbered SQL files in ``infra/migrations``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from infra import progress
from infra.settings import Settings

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    """Register ``migrate`` on ``vinr``'s subcommands."""
    migrate = sub.add_parser(
        "migrate",
        help="apply database migrations (idempotent)",
        description="Create the database named by VINR_DATABASE_URL when it is missing,"
        " then apply the migrations it has not had yet, each in its own transaction, in"
        " order. Running it again changes nothing; several at once are safe (one waits for"
        " the other). `vinr doctor` names the pending ones.",
        epilog="example:\n  VINR_DATABASE_URL=postgresql://vinr@db:5432/vinr vinr migrate",
    )
    migrate.set_defaults(handler=_migrate)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    try:
        asyncio.run(_apply(settings))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"vinr migrate: {exc}", file=sys.stderr)
        return 1
    return 0


async def _apply(settings: Settings) -> None:
    from infra.db import apply_migrations, ensure_database

    dsn = settings.database_url.get_secret_value()
    if await ensure_database(dsn):
        print("created database", file=sys.stderr)
    conn = await asyncpg.connect(dsn)
    try:
        with progress.bar("applying migrations") as report:
            applied = await apply_migrations(conn, report)
    finally:
        await conn.close()
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")
