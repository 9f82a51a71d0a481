"""Accounts and their API keys: every statement on ``accounts``, ``api_keys`` and
``api_key_epoch``, and the authenticator that turns a request's key into a ``Tenant``.

A key belongs to one account and one mode: ``sk_test_…``/``sk_live_…`` (secret: every
operation) or ``rk_test_…``/``rk_live_…`` (restricted: what its permissions allow,
``domain.permissions``). Only a SHA-256 of a key is stored; the key itself is returned once,
by the call that creates it. Each key has a public id (``key_…``) by which it is listed,
revoked and rolled.

Lookups are cached in each API process (the usage hot path cannot afford a query per
request). Every revocation and expiry change bumps the one-row ``api_key_epoch`` in the
same transaction; each process polls it every ``EPOCH_POLL_S`` and drops its cache when it
moved, so a revoked key stops working everywhere within about that long (ADR 0008).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeAlias

import asyncpg

from domain.clock import now_s
from domain.permissions import RESTRICTED_DEFAULT
from domain.tenant import Tenant
from infra.epoch import EpochWatch
from infra.errors import (
    AuthenticationFailed,
    Conflict,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
)
from infra.ids import new_id, new_secret

__all__ = [
    "EPOCH_POLL_S",
    "KEY_PREFIXES",
    "MAX_NAME_LENGTH",
    "MAX_ROLL_EXPIRY_S",
    "ApiKey",
    "KeyAuthenticator",
    "NewKey",
    "check_account",
    "create_account",
    "create_key",
    "find_key",
    "get_key",
    "hash_key",
    "key_hint",
    "key_page",
    "list_keys",
    "revoke_key",
    "roll_key",
    "shown",
]

log = logging.getLogger(__name__)

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"
KeyKind = Literal["secret", "restricted"]
KeyStatus = Literal["active", "expired", "revoked"]

KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
MAX_NAME_LENGTH = 100
# How long a rolled key may keep working next to its replacement.
MAX_ROLL_EXPIRY_S = 30 * 86_400
# How often each API process reads the epoch: the bound on how long a revoked key that is
# cached keeps working, plus one query's latency.
EPOCH_POLL_S = 0.25
_CACHE_TTL_S = 60.0  # a cached lookup's life while the epoch cannot be read (Postgres away)
_CACHE_MAX = 10_000
_POLL_TIMEOUT_S = 2.0
_COLUMNS = (
    "id, key_hash, account_id, livemode, kind, permissions, name, hint, created,"
    " expires_at, revoked, revoked_at"
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key, without its secret."""

    id: str
    account_id: str
    livemode: bool
    kind: KeyKind
    permissions: tuple[str, ...]
    name: str | None
    hint: str
    created: int
    expires_at: int | None
    revoked: bool
    revoked_at: int | None

    def status(self, now: float) -> KeyStatus:
        if self.revoked:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def describe(self) -> str:
        """How a message names the key: its id and hint, never the key."""
        return f"{self.id} ({self.hint})"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created: ``secret`` is shown to its creator this once and never stored."""

    key: ApiKey
    secret: str = field(repr=False)


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def key_hint(key: str) -> str:
    """What may be shown of a key: its prefix and last four characters."""
    return f"{key[:8]}…{key[-4:]}"


def shown(key_or_id: str) -> str:
    """A key or id as a message may repeat it (a key only as its hint)."""
    if key_or_id.startswith(KEY_PREFIXES):
        return key_hint(key_or_id)
    return key_or_id if len(key_or_id) <= 64 else key_or_id[:64] + "…"


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        account_id=row["account_id"],
        livemode=row["livemode"],
        kind=row["kind"],
        permissions=tuple(sorted(row["permissions"])),
        name=row["name"],
        hint=row["hint"],
        created=row["created"],
        expires_at=row["expires_at"],
        revoked=row["revoked"],
        revoked_at=row["revoked_at"],
    )


# -- authentication ----------------------------------------------------------------------

_Entry = tuple[Tenant, bytes, float]  # tenant, stored hash, monotonic deadline
_Found = tuple[Tenant | None, str]  # tenant, or None and why: unknown, revoked, expired…


class KeyAuthenticator:
    """Key → tenant, cached per process; ``watch`` keeps the cache honest (run it as a task).

    The cache is keyed by the key's SHA-256 digest, never by the key, and a hit is compared
    in constant time with the stored hash. A cached entry lives until the key's expiry, at
    most a minute, and until the epoch moves — whichever comes first.
    """

    def __init__(self, pool: asyncpg.Pool, *, poll_s: float = EPOCH_POLL_S) -> None:
        self._pool = pool
        self._cache: dict[bytes, _Entry] = {}
        self._lookups: dict[bytes, asyncio.Task[_Found]] = {}
        self._generation = 0  # +1 at every drop: a lookup begun before it is not cached
        self._epoch = EpochWatch(
            self._read_epoch,
            self.invalidate,
            poll_s=poll_s,
            timeout_s=_POLL_TIMEOUT_S,
            what="API key epoch",
        )

    def cached(self, authorization: str | None) -> Tenant | None:
        """The tenant of a key looked up recently (only valid keys are kept), without a
        coroutine; None means: call ``authenticate``."""
        if authorization is None:
            return None
        scheme, _, key = authorization.partition(" ")
        digest = hashlib.sha256(key.encode()).digest()
        hit = self._cache.get(digest)
        if (
            hit is not None
            and hit[2] > time.monotonic()
            and hmac.compare_digest(hit[1], digest)
            and scheme.lower() == "bearer"
        ):
            return hit[0]
        return None

    async def authenticate(self, authorization: str | None) -> Tenant:
        """Raises AuthenticationFailed for a missing, malformed, unknown, revoked or
        expired key, DependencyUnavailable when Postgres cannot be asked."""
        if not authorization:
            raise AuthenticationFailed(
                "no API key provided: send 'Authorization: Bearer sk_test_…'"
            )
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIXES):
            raise AuthenticationFailed(
                "malformed Authorization header: expected 'Bearer ' and a key starting"
                " with sk_test_, sk_live_, rk_test_ or rk_live_"
            )
        return await self.authenticate_hash(hashlib.sha256(key.encode()).digest(), key_hint(key))

    async def authenticate_hash(self, digest: bytes, hint: str) -> Tenant:
        """``authenticate`` for a key known by its SHA-256 only (a Dashboard session keeps
        that, never the key); ``hint`` names the key in a refusal. Cached and dropped with
        the epoch like every lookup, so a revoked key's sessions end within ``EPOCH_POLL_S``."""
        hit = self._cache.get(digest)
        if hit is not None and hit[2] > time.monotonic() and hmac.compare_digest(hit[1], digest):
            return hit[0]
        # One query per key at a time: after the cache is dropped, the requests of a busy
        # key wait for the same lookup instead of each taking a connection.
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(self._lookup(digest))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda done: self._looked_up(digest, done))
        tenant, why = await asyncio.shield(lookup)
        if tenant is not None:
            return tenant
        if why.startswith("expired"):
            raise AuthenticationFailed(
                f"this API key {why}: {hint}; use its replacement or create a new key",
                code="api_key_expired",
            )
        if why == "revoked":
            raise AuthenticationFailed(f"this API key was revoked: {hint}")
        raise AuthenticationFailed(f"invalid API key provided: {hint}")

    def _looked_up(self, digest: bytes, done: asyncio.Task[_Found]) -> None:
        if self._lookups.get(digest) is done:
            del self._lookups[digest]
        if not done.cancelled():
            done.exception()  # retrieved: a waiter that went away must not leave it unread

    async def _lookup(self, digest: bytes) -> _Found:
        generation = self._generation
        try:
            row = await self._pool.fetchrow(
                "SELECT id, key_hash, account_id, livemode, kind, permissions, expires_at,"
                " revoked FROM api_keys WHERE key_hash = $1",
                digest,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailable("postgres", str(exc)) from exc
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            return None, "unknown"
        if row["revoked"]:
            return None, "revoked"
        wall = time.time()
        expires_at = row["expires_at"]
        if expires_at is not None and expires_at <= wall:
            when = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            return None, f"expired at {when}"
        restricted = row["kind"] == "restricted"
        tenant = Tenant(
            row["account_id"],
            row["livemode"],
            row["id"],
            restricted,
            frozenset(row["permissions"]) if restricted else frozenset(),
        )
        life = _CACHE_TTL_S if expires_at is None else min(_CACHE_TTL_S, expires_at - wall)
        if generation == self._generation:
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[digest] = (tenant, bytes(row["key_hash"]), time.monotonic() + life)
        return tenant, ""

    async def _read_epoch(self) -> int:
        return int(await self._pool.fetchval("SELECT epoch FROM api_key_epoch"))

    def invalidate(self) -> None:
        """Forget every cached lookup, and any lookup in flight (it will not be cached)."""
        self._cache.clear()
        self._lookups.clear()
        self._generation += 1

    async def poll_epoch(self) -> bool:
        """Read the epoch once; drops the cache when it moved (also on the first read: a
        lookup cached before it may predate a change). True when it did."""
        return await self._epoch.poll()

    async def watch(self) -> None:
        """Poll the epoch until cancelled. Failures are logged and retried: while Postgres
        is away, cached keys keep working (for at most a minute) and revocations, which
        need Postgres too, wait for it."""
        await self._epoch.run()


# -- accounts and keys -------------------------------------------------------------------


def _prefix(kind: KeyKind, livemode: bool) -> str:
    return ("sk" if kind == "secret" else "rk") + ("_live" if livemode else "_test")


def _check_name(name: str | None) -> None:
    if name is not None and not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidRequest(
            f"name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}", param="name"
        )


async def _insert_key(
    conn: asyncpg.Connection[Any],
    account_id: str,
    *,
    livemode: bool,
    kind: KeyKind,
    permissions: frozenset[str] | tuple[str, ...],
    name: str | None,
    created: int,
) -> NewKey:
    secret = new_secret(_prefix(kind, livemode))
    row = await conn.fetchrow(
        "INSERT INTO api_keys (id, key_hash, account_id, livemode, kind, permissions, name,"
        " hint, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        f" RETURNING {_COLUMNS}",
        new_id("key"),
        hash_key(secret),
        account_id,
        livemode,
        kind,
        sorted(permissions),
        name,
        key_hint(secret),
        created,
    )
    return NewKey(_api_key(row), secret)


async def create_account(conn: asyncpg.Connection[Any], name: str) -> tuple[str, str, str]:
    """A new account with one sandbox and one live secret key: (account_id, sk_test, sk_live)."""
    account_id = new_id("acct")
    created = now_s()
    async with conn.transaction():
        await conn.execute(
            "INSERT INTO accounts (id, name, created) VALUES ($1, $2, $3)",
            account_id,
            name,
            created,
        )
        test, live = [
            await _insert_key(
                conn,
                account_id,
                livemode=livemode,
                kind="secret",
                permissions=(),
                name=None,
                created=created,
            )
            for livemode in (False, True)
        ]
    return account_id, test.secret, live.secret


async def create_key(
    conn: asyncpg.Connection[Any],
    account_id: str,
    *,
    livemode: bool,
    restricted: bool = False,
    name: str | None = None,
) -> NewKey:
    """A new key of the account: secret, or restricted to ``RESTRICTED_DEFAULT``."""
    _check_name(name)
    async with conn.transaction():
        if await conn.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
            raise NotFound(f"no such account: '{shown(account_id)}'", param="account")
        return await _insert_key(
            conn,
            account_id,
            livemode=livemode,
            kind="restricted" if restricted else "secret",
            permissions=RESTRICTED_DEFAULT if restricted else (),
            name=name,
            created=now_s(),
        )


async def check_account(db: Db, account_id: str) -> None:
    """Raises NotFound (naming it, as a key would be shown) unless the account exists."""
    if await db.fetchval("SELECT 1 FROM accounts WHERE id = $1", account_id) is None:
        raise NotFound(f"no such account: '{shown(account_id)}'", param="account")


async def list_keys(db: Db, account_id: str) -> list[ApiKey]:
    """Every key of the account, both modes, newest first (revoked and expired included)."""
    await check_account(db, account_id)
    rows = await db.fetch(
        f"SELECT {_COLUMNS} FROM api_keys WHERE account_id = $1 ORDER BY created DESC, id DESC",
        account_id,
    )
    return [_api_key(r) for r in rows]


async def key_page(
    pool: asyncpg.Pool,
    t: Tenant,
    *,
    limit: int,
    starting_after: str | None,
    render: Callable[[ApiKey], dict[str, Any]],
) -> dict[str, Any]:
    """One list page of the keys of this account and mode, newest first."""
    from domain.store.owned import page  # it names Tenant from here: imported when used

    return await page(
        pool,
        table="api_keys",
        t=t,
        limit=limit,
        starting_after=starting_after,
        url="/v1/api_keys",
        render=lambda row: render(_api_key(row)),
        select=_COLUMNS,
    )


async def get_key(db: Db, t: Tenant, key_id: str) -> ApiKey | None:
    """The key ``key_id`` if it belongs to this account and mode."""
    row = await db.fetchrow(
        f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1 AND account_id = $2 AND livemode = $3",
        key_id,
        t.account_id,
        t.livemode,
    )
    return None if row is None else _api_key(row)


async def find_key(db: Db, key_or_id: str) -> ApiKey | None:
    """A key by its id (``key_…``) or by the key itself, in any account (operators)."""
    if key_or_id.startswith(KEY_PREFIXES):
        row = await db.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = $1", hash_key(key_or_id)
        )
    else:
        row = await db.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key_or_id)
    return None if row is None else _api_key(row)


async def _locked(conn: asyncpg.Connection[Any], key_or_id: str, scope: Tenant | None) -> ApiKey:
    """The key, with its account's keys serialised for this transaction; 404 when it is not
    there or (with a ``scope``) belongs to another account or mode."""
    key = await find_key(conn, key_or_id)
    if key is None or (
        scope is not None and (key.account_id, key.livemode) != (scope.account_id, scope.livemode)
    ):
        raise NotFound(f"no such API key: '{shown(key_or_id)}'")
    # Changes to one account's keys take turns: "is another secret key left?" stays true
    # until the change that relied on it commits.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('api_keys:' || $1, 0))", key.account_id
    )
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM api_keys WHERE id = $1", key.id)
    return _api_key(row)


async def _bump_epoch(conn: asyncpg.Connection[Any]) -> None:
    await conn.execute("UPDATE api_key_epoch SET epoch = epoch + 1")


async def revoke_key(
    conn: asyncpg.Connection[Any],
    key_or_id: str,
    *,
    scope: Tenant | None = None,
    keep_one: bool = False,
) -> ApiKey:
    """Revoke a key (by id or by the key itself); revoking a revoked key changes nothing.

    ``scope``: only a key of this account and mode (else 404). ``keep_one``: refuse (409)
    to revoke a working secret key when no other secret key of its mode that does not
    expire would remain — through the API, an account cannot lock itself out.
    """
    async with conn.transaction():
        key = await _locked(conn, key_or_id, scope)
        if key.revoked:
            return key
        now = now_s()
        if keep_one and key.kind == "secret" and key.status(now) == "active":
            others = await conn.fetchval(
                "SELECT count(*) FROM api_keys WHERE account_id = $1 AND livemode = $2"
                " AND kind = 'secret' AND NOT revoked AND expires_at IS NULL AND id <> $3",
                key.account_id,
                key.livemode,
                key.id,
            )
            if not others:
                mode = "live mode" if key.livemode else "sandbox"
                raise Conflict(
                    f"{key.describe()} is the last secret key of this account's {mode} that"
                    " does not expire; revoking it would leave no key to manage the account."
                    " Create another secret key first (POST /v1/api_keys, or `vinr key"
                    " create`), or revoke it with `vinr key revoke`",
                    code="last_secret_key",
                )
        row = await conn.fetchrow(
            "UPDATE api_keys SET revoked = true, revoked_at = $2 WHERE id = $1"
            f" RETURNING {_COLUMNS}",
            key.id,
            now,
        )
        await _bump_epoch(conn)
    return _api_key(row)


async def roll_key(
    conn: asyncpg.Connection[Any],
    key_or_id: str,
    *,
    expire_in_s: int = 0,
    scope: Tenant | None = None,
) -> tuple[NewKey, ApiKey]:
    """A new key of the same account, mode, kind, permissions and name; the old one keeps
    working for ``expire_in_s`` more seconds (0: it stops now). Returns (new, old)."""
    if not 0 <= expire_in_s <= MAX_ROLL_EXPIRY_S:
        raise InvalidRequest(
            f"the old key may keep working for 0 to {MAX_ROLL_EXPIRY_S} seconds (30 days),"
            f" got {expire_in_s}",
            param="expiresIn",
        )
    async with conn.transaction():
        old = await _locked(conn, key_or_id, scope)
        now = now_s()
        status = old.status(now)
        if status != "active":
            raise Conflict(
                f"{old.describe()} is {status} and cannot be rolled; create a new key instead",
                code=f"api_key_{status}",
            )
        new = await _insert_key(
            conn,
            old.account_id,
            livemode=old.livemode,
            kind=old.kind,
            permissions=old.permissions,
            name=old.name,
            created=now,
        )
        expires_at = now + expire_in_s
        if old.expires_at is not None:
            expires_at = min(expires_at, old.expires_at)
        row = await conn.fetchrow(
            f"UPDATE api_keys SET expires_at = $2 WHERE id = $1 RETURNING {_COLUMNS}",
            old.id,
            expires_at,
        )
        await _bump_epoch(conn)
    return new, _api_key(row)
