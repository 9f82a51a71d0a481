"""API keys: ``sk_test_…`` / ``sk_live_…`` belong to an account and a mode.

Only a SHA-256 of each key is stored. Lookups are cached in-process for a minute, so a
revoked key stops working within that minute.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.clock import now_s
from infra.errors import AuthenticationFailed, DependencyUnavailable
from infra.ids import new_id, new_secret

__all__ = ["KeyAuthenticator", "Tenant", "create_account", "hash_key"]

_CACHE_TTL_S = 60.0


@dataclass(frozen=True, slots=True)
class Tenant:
    """Who a request acts for: an account in one mode, through one key."""

    account_id: str
    livemode: bool
    key_id: str = ""
    restricted: bool = False


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyAuthenticator:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._cache: dict[str, tuple[Tenant, float]] = {}

    def cached(self, authorization: str | None) -> Tenant | None:
        """The tenant of a key looked up in the last minute (only valid keys are kept),
        without a coroutine; None means: call ``authenticate``."""
        if authorization is None:
            return None
        scheme, _, key = authorization.partition(" ")
        hit = self._cache.get(key)
        if hit is not None and hit[1] > time.monotonic() and scheme.lower() == "bearer":
            return hit[0]
        return None

    async def authenticate(self, authorization: str | None) -> Tenant:
        """Raises AuthenticationFailed for a missing, malformed, unknown or revoked key."""
        if not authorization:
            raise AuthenticationFailed(
                "no API key provided: send 'Authorization: Bearer sk_test_…'"
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.startswith(("sk_test_", "sk_live_")):
            raise AuthenticationFailed(
                "malformed Authorization header: expected 'Bearer sk_test_…' or 'Bearer sk_live_…'"
            )
        cached = self._cache.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            row = await self._pool.fetchrow(
                "SELECT account_id, livemode FROM api_keys WHERE key_hash = $1 AND NOT revoked",
                hash_key(key),
            )
        except (OSError, asyncpg.PostgresError) as exc:
            raise DependencyUnavailable("postgres", str(exc)) from exc
        if row is None:
            raise AuthenticationFailed(f"invalid API key provided: {key[:8]}…{key[-4:]}")
        tenant = Tenant(row["account_id"], row["livemode"], "key_" + hash_key(key).hex()[:24])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (tenant, now + _CACHE_TTL_S)
        return tenant


async def create_account(conn: asyncpg.Connection[Any], name: str) -> tuple[str, str, str]:
    """A new account with one sandbox and one live key: (account_id, sk_test, sk_live)."""
    account_id = new_id("acct")
    test_key = new_secret("sk_test")
    live_key = new_secret("sk_live")
    created = now_s()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO accounts (id, name, created) VALUES ($1, $2, $3)",
            account_id,
            name,
            created,
        )
        for key, live in ((test_key, False), (live_key, True)):
            await conn.execute(
                "INSERT INTO api_keys (key_hash, account_id, livemode, hint, created)"
                " VALUES ($1, $2, $3, $4, $5)",
                hash_key(key),
                account_id,
                live,
                f"{key[:8]}…{key[-4:]}",
                created,
            )
    return account_id, test_key, live_key
