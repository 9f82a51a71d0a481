"""An isolated environment whose Postgres and Redis URLs carry passwords.

Postgres: a login role with a random password owns a fresh database (the local server
trusts loopback connections, so the password is carried but not checked there; a server
that checks passwords checks it). Redis: an ACL user with a random password, so every
connection really authenticates with it. Both are dropped afterwards.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
from redis.asyncio import Redis

from infra.devenv import postgres_root, purge_redis_prefix, redis_url
from infra.settings import Settings

__all__ = ["PasswordEnv", "password_env", "with_userinfo"]


def with_userinfo(url: str, user: str, password: str, *, path: str | None = None) -> str:
    """``url`` with its user and password replaced (and its path, if given)."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{user}:{password}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path if path is None else path, parts.query, ""))


@dataclass(frozen=True)
class PasswordEnv:
    settings: Settings
    postgres_password: str = field(repr=False)
    redis_password: str = field(repr=False)
    redis_user: str


@asynccontextmanager
async def password_env(broker: str, *, label: str, **overrides: Any) -> AsyncIterator[PasswordEnv]:
    """Settings for a new database owned by a password-carrying role, a Redis ACL user with
    a password, and a topic, prefix and consumer group of their own. Not migrated: the
    caller runs ``vinr migrate`` with them."""
    run = uuid.uuid4().hex[:8]
    role, database, redis_user = f"vinr_{label}_{run}", f"vinr_{label}_{run}", f"vinr-{label}-{run}"
    pg_password, redis_password = f"pgpw{secrets.token_hex(16)}", f"rdpw{secrets.token_hex(16)}"
    root = postgres_root()
    admin = await asyncpg.connect(f"{root}/postgres")
    try:
        await admin.execute(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{pg_password}'")
        await admin.execute(f'CREATE DATABASE "{database}" OWNER "{role}"')
    finally:
        await admin.close()
    redis = Redis.from_url(redis_url())
    prefix = f"vinr{label}:{run}:"
    try:
        await redis.execute_command(
            "ACL", "SETUSER", redis_user, "reset", "on", f">{redis_password}", "~*", "&*", "+@all"
        )
        values: dict[str, Any] = {
            "database_url": with_userinfo(root, role, pg_password, path=f"/{database}"),
            "redis_url": with_userinfo(redis_url(), redis_user, redis_password),
            "redis_prefix": prefix,
            "kafka_bootstrap": broker,
            "usage_topic": f"vinr.usage.{label}.{run}",
            "consumer_group": f"vinr-{label}-{run}",
        }
        values.update(overrides)
        yield PasswordEnv(Settings(**values), pg_password, redis_password, redis_user)
    finally:
        try:
            await redis.execute_command("ACL", "DELUSER", redis_user)
            await purge_redis_prefix(prefix)
        finally:
            await redis.aclose()
            admin = await asyncpg.connect(f"{root}/postgres")
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
            finally:
                await admin.close()
