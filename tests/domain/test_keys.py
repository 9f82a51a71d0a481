"""Accounts and API keys in ``domain.accounts``, against the real Postgres: keys stored only
as hashes, the key kinds, revoke and roll, the epoch that drops every process's cache, the
cache's constant-time hit and its honesty about expiry, and a watch that outlives an outage."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from domain import accounts
from domain.accounts import KeyAuthenticator, create_account, hash_key
from domain.permissions import USAGE_RECORDS_WRITE
from domain.tenant import Tenant
from infra.db import migration_files
from infra.devenv import postgres_root
from infra.errors import AuthenticationFailed, Conflict, InvalidRequest, NotFound
from infra.settings import Settings
from tests.support.ingest import TcpProxy
from tests.support.sqlscan import ROOT, modules, sql_tables

PACKAGES = (
    "vinr",
    "ingest",
    "control",
    "dashboard",
    "aggregator",
    "invoicer",
    "dispatcher",
    "domain",
    "infra",
)
TABLES = ("accounts", "api_keys", "api_key_epoch")


def bearer(key: str) -> str:
    return f"Bearer {key}"


async def _account(pool: asyncpg.Pool) -> tuple[str, str, str]:
    async with pool.acquire() as conn:
        return await create_account(conn, f"keys-{uuid.uuid4().hex[:6]}")


async def _epoch(pool: asyncpg.Pool) -> int:
    value: int = await pool.fetchval("SELECT epoch FROM api_key_epoch")
    return value


def test_sql_on_accounts_and_keys_lives_in_domain_accounts() -> None:
    offenders = {
        path.relative_to(ROOT).as_posix(): hits
        for path in modules(PACKAGES)
        if path.relative_to(ROOT).as_posix() != "domain/accounts.py"
        and (hits := sql_tables(path.read_text(), TABLES, bare_names=True))
    }
    assert offenders == {}
    own = set(sql_tables((ROOT / "domain/accounts.py").read_text(), TABLES, bare_names=True))
    assert own == set(TABLES)


async def test_the_migration_gives_existing_keys_the_id_they_were_reported_by() -> None:
    """Keys made before 009 keep working, as secret keys, with ``key_`` + their hash's hex
    (the id the API reported for them), and 009 applies twice without harm."""
    name = f"vinr_keys_migration_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{postgres_root()}/postgres")
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(f"{postgres_root()}/{name}")
        try:
            files = migration_files()
            for version, _, sql in files:
                if version < 9:
                    await conn.execute(sql)
            await conn.execute("INSERT INTO accounts VALUES ('acct_old', 'old', 1)")
            for key, live, revoked in (
                ("sk_test_old1", False, False),
                ("sk_live_old2", True, True),
            ):
                await conn.execute(
                    "INSERT INTO api_keys (key_hash, account_id, livemode, hint, created, revoked)"
                    " VALUES ($1, 'acct_old', $2, 'hint', 1, $3)",
                    hash_key(key),
                    live,
                    revoked,
                )
            nine = next(sql for version, _, sql in files if version == 9)
            await conn.execute(nine)
            await conn.execute(nine)
            keys = {k.livemode: k for k in await accounts.list_keys(conn, "acct_old")}
            assert keys[False].id == "key_" + hash_key("sk_test_old1").hex()[:24]
            assert keys[True].id == "key_" + hash_key("sk_live_old2").hex()[:24]
            assert [(k.kind, k.permissions, k.status(2.0)) for k in (keys[False], keys[True])] == [
                ("secret", (), "active"),
                ("secret", (), "revoked"),
            ]
            assert await conn.fetchval("SELECT epoch FROM api_key_epoch") == 0
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}"')
        await admin.close()


async def test_a_new_account_has_one_secret_key_per_mode(pool: asyncpg.Pool) -> None:
    account, test_key, live_key = await _account(pool)
    assert test_key.startswith("sk_test_") and live_key.startswith("sk_live_")
    keys = await accounts.list_keys(pool, account)
    assert sorted((k.livemode, k.kind, k.status(time.time())) for k in keys) == [
        (False, "secret", "active"),
        (True, "secret", "active"),
    ]
    auth = KeyAuthenticator(pool)
    by_mode = {k.livemode: k for k in keys}
    for key, live in ((test_key, False), (live_key, True)):
        tenant = await auth.authenticate(bearer(key))
        assert tenant == Tenant(account, live, by_mode[live].id, False, frozenset())
        assert tenant.key_id.startswith("key_") and len(tenant.key_id) == 28
        assert by_mode[live].hint == f"{key[:8]}…{key[-4:]}"


async def test_keys_are_stored_only_as_their_sha256(pool: asyncpg.Pool) -> None:
    account, test_key, _ = await _account(pool)
    async with pool.acquire() as conn:
        new = await accounts.create_key(conn, account, livemode=False, restricted=True)
    for key in (test_key, new.secret):
        stored = await pool.fetchval(
            "SELECT row_to_json(k)::text FROM api_keys k WHERE key_hash = $1", hash_key(key)
        )
        assert stored is not None
        assert key not in stored and key[8:] not in stored
    assert new.secret not in repr(new) and new.secret not in repr(new.key)


async def test_a_restricted_key_holds_usage_records_write(pool: asyncpg.Pool) -> None:
    account, _, _ = await _account(pool)
    async with pool.acquire() as conn:
        new = await accounts.create_key(
            conn, account, livemode=True, restricted=True, name="producer"
        )
    assert new.secret.startswith("rk_live_")
    assert (new.key.kind, new.key.permissions, new.key.name) == (
        "restricted",
        (USAGE_RECORDS_WRITE,),
        "producer",
    )
    tenant = await KeyAuthenticator(pool).authenticate(bearer(new.secret))
    assert tenant == Tenant(account, True, new.key.id, True, frozenset({USAGE_RECORDS_WRITE}))


async def test_create_key_refuses_an_unknown_account_and_a_bad_name(pool: asyncpg.Pool) -> None:
    account, _, _ = await _account(pool)
    async with pool.acquire() as conn:
        with pytest.raises(NotFound, match="no such account: 'acct_nope'"):
            await accounts.create_key(conn, "acct_nope", livemode=False)
        with pytest.raises(InvalidRequest, match="name must be 1 to 100 characters") as bad:
            await accounts.create_key(conn, account, livemode=False, name="x" * 101)
        assert bad.value.param == "name"
    assert len(await accounts.list_keys(pool, account)) == 2


async def test_revoke_by_id_or_by_key_bumps_the_epoch_once(pool: asyncpg.Pool) -> None:
    _, test_key, live_key = await _account(pool)
    auth = KeyAuthenticator(pool)
    live_id = (await auth.authenticate(bearer(live_key))).key_id
    before = await _epoch(pool)
    async with pool.acquire() as conn:
        revoked = await accounts.revoke_key(conn, test_key)
        assert revoked.revoked and revoked.revoked_at is not None
        assert await _epoch(pool) == before + 1
        again = await accounts.revoke_key(conn, revoked.id)  # nothing changes
        assert again == revoked and await _epoch(pool) == before + 1
        await accounts.revoke_key(conn, live_id)
    assert await _epoch(pool) == before + 2
    fresh = KeyAuthenticator(pool)
    for key in (test_key, live_key):
        with pytest.raises(AuthenticationFailed, match="this API key was revoked: sk_"):
            await fresh.authenticate(bearer(key))


async def test_unknown_keys_are_named_by_hint_only(pool: asyncpg.Pool) -> None:
    secret = f"sk_test_{uuid.uuid4().hex}"
    async with pool.acquire() as conn:
        with pytest.raises(NotFound) as missing:
            await accounts.revoke_key(conn, secret)
    assert secret not in missing.value.message and secret[:8] in missing.value.message
    with pytest.raises(AuthenticationFailed) as refused:
        await KeyAuthenticator(pool).authenticate(bearer(secret))
    assert secret not in refused.value.message


async def test_scope_and_the_last_secret_key_guard(pool: asyncpg.Pool) -> None:
    account, test_key, _ = await _account(pool)
    _, other_key, _ = await _account(pool)
    auth = KeyAuthenticator(pool)
    mine = await auth.authenticate(bearer(test_key))
    theirs = await auth.authenticate(bearer(other_key))
    live_scope = Tenant(account, True, "")
    async with pool.acquire() as conn:
        for scope in (theirs, live_scope):  # another account, the same account's other mode
            with pytest.raises(NotFound):
                await accounts.revoke_key(conn, mine.key_id, scope=scope, keep_one=True)
            with pytest.raises(NotFound):
                await accounts.roll_key(conn, mine.key_id, scope=scope)
        with pytest.raises(Conflict, match="last secret key of this account's sandbox") as last:
            await accounts.revoke_key(conn, mine.key_id, scope=mine, keep_one=True)
        assert "vinr key create" in last.value.message
        restricted = await accounts.create_key(conn, account, livemode=False, restricted=True)
        # A restricted key is no way to manage the account: still the last one.
        with pytest.raises(Conflict):
            await accounts.revoke_key(conn, mine.key_id, scope=mine, keep_one=True)
        assert (
            await accounts.revoke_key(conn, restricted.key.id, scope=mine, keep_one=True)
        ).revoked
        spare = await accounts.create_key(conn, account, livemode=False)
        assert (await accounts.revoke_key(conn, mine.key_id, scope=mine, keep_one=True)).revoked
        with pytest.raises(Conflict):
            await accounts.revoke_key(conn, spare.key.id, scope=mine, keep_one=True)
        # Operators are not held back.
        assert (await accounts.revoke_key(conn, spare.key.id)).revoked
    assert await accounts.get_key(pool, mine, mine.key_id) is not None
    assert await accounts.get_key(pool, theirs, mine.key_id) is None


async def test_concurrent_revocations_keep_one_secret_key(pool: asyncpg.Pool) -> None:
    account, test_key, _ = await _account(pool)
    async with pool.acquire() as conn:
        second = await accounts.create_key(conn, account, livemode=False)
    tenant = await KeyAuthenticator(pool).authenticate(bearer(test_key))

    async def revoke(ident: str) -> str:
        async with pool.acquire() as conn:
            try:
                await accounts.revoke_key(conn, ident, scope=tenant, keep_one=True)
            except Conflict:
                return "refused"
            return "revoked"

    outcomes = await asyncio.gather(revoke(tenant.key_id), revoke(second.key.id))
    assert sorted(outcomes) == ["refused", "revoked"]


async def test_roll_overlaps_then_the_old_key_expires_even_when_cached(pool: asyncpg.Pool) -> None:
    account, test_key, _ = await _account(pool)
    auth = KeyAuthenticator(pool)
    old_tenant = await auth.authenticate(bearer(test_key))
    before = await _epoch(pool)
    async with pool.acquire() as conn:
        new, old = await accounts.roll_key(conn, test_key, expire_in_s=2)
    assert await _epoch(pool) == before + 1
    assert new.secret.startswith("sk_test_") and new.key.kind == "secret"
    assert old.id == old_tenant.key_id and old.expires_at is not None
    assert old.expires_at - time.time() <= 2
    await auth.poll_epoch()  # what the watch does: the lookup with the old expiry is dropped
    assert auth.cached(bearer(test_key)) is None
    assert (await auth.authenticate(bearer(test_key))).key_id == old.id  # overlap
    assert auth.cached(bearer(test_key)) is not None  # cached until the expiry, no longer
    assert (await auth.authenticate(bearer(new.secret))).account_id == account
    deadline = old.expires_at + 1.5
    while auth.cached(bearer(test_key)) is not None:
        assert time.time() < deadline, "a cached key outlived its expiry"
        await asyncio.sleep(0.05)
    assert time.time() >= old.expires_at - 0.05
    with pytest.raises(AuthenticationFailed, match="this API key expired at") as expired:
        await auth.authenticate(bearer(test_key))
    assert expired.value.code == "api_key_expired"
    assert (await auth.authenticate(bearer(new.secret))).key_id == new.key.id


async def test_roll_by_default_stops_the_old_key_now(pool: asyncpg.Pool) -> None:
    account, test_key, _ = await _account(pool)
    async with pool.acquire() as conn:
        restricted = await accounts.create_key(
            conn, account, livemode=False, restricted=True, name="meter"
        )
        new, old = await accounts.roll_key(conn, restricted.key.id)
        assert old.status(time.time()) == "expired"
        assert (new.key.kind, new.key.permissions, new.key.name, new.key.livemode) == (
            "restricted",
            (USAGE_RECORDS_WRITE,),
            "meter",
            False,
        )
        assert new.secret.startswith("rk_test_")
        with pytest.raises(Conflict, match="is expired and cannot be rolled"):
            await accounts.roll_key(conn, old.id)
        await accounts.revoke_key(conn, new.key.id)
        with pytest.raises(Conflict, match="is revoked and cannot be rolled"):
            await accounts.roll_key(conn, new.secret)
        for bad in (-1, 30 * 86_400 + 1):
            with pytest.raises(InvalidRequest, match="0 to 2592000 seconds") as refused:
                await accounts.roll_key(conn, test_key, expire_in_s=bad)
            assert refused.value.param == "expiresIn"
    with pytest.raises(AuthenticationFailed, match="expired"):
        await KeyAuthenticator(pool).authenticate(bearer(restricted.secret))
    assert (await KeyAuthenticator(pool).authenticate(bearer(test_key))).account_id == account


async def test_the_cache_holds_digests_and_compares_them_in_constant_time(
    pool: asyncpg.Pool,
) -> None:
    _, test_key, _ = await _account(pool)
    auth = KeyAuthenticator(pool)
    tenant = await auth.authenticate(bearer(test_key))
    digest = hash_key(test_key)
    entries = auth._cache
    assert list(entries) == [digest]
    assert all(test_key not in repr(v) for v in entries.values())
    assert auth.cached(bearer(test_key)) == tenant
    # One character off: another digest, no hit.
    assert auth.cached(bearer(test_key[:-1] + ("A" if test_key[-1] != "A" else "B"))) is None
    # The hit is confirmed against the stored hash, not taken on the dict lookup alone.
    cached_tenant, stored, deadline = entries[digest]
    entries[digest] = (cached_tenant, stored[:-1] + bytes([stored[-1] ^ 1]), deadline)
    assert auth.cached(bearer(test_key)) is None
    assert auth.cached(f"Basic {test_key}") is None


async def test_a_moved_epoch_drops_a_warm_cache(pool: asyncpg.Pool) -> None:
    _, test_key, _ = await _account(pool)
    auth = KeyAuthenticator(pool)
    await auth.poll_epoch()
    assert not await auth.poll_epoch()  # nothing changed: the cache stays
    await auth.authenticate(bearer(test_key))
    async with pool.acquire() as conn:
        await accounts.revoke_key(conn, test_key)
    assert auth.cached(bearer(test_key)) is not None  # not yet told
    assert await auth.poll_epoch()
    assert auth.cached(bearer(test_key)) is None
    with pytest.raises(AuthenticationFailed, match="revoked"):
        await auth.authenticate(bearer(test_key))


async def test_a_lookup_in_flight_across_a_drop_is_not_cached(settings: Settings) -> None:
    _, test_key, _ = await _account_on(settings)
    small = await asyncpg.create_pool(
        settings.database_url.get_secret_value(), min_size=1, max_size=1
    )
    try:
        auth = KeyAuthenticator(small)
        held = await small.acquire()
        lookup = asyncio.create_task(auth.authenticate(bearer(test_key)))
        await asyncio.sleep(0.05)  # the lookup waits for the only connection
        waiting = [asyncio.create_task(auth.authenticate(bearer(test_key))) for _ in range(5)]
        await asyncio.sleep(0.05)
        assert len(auth._lookups) == 1  # one query for every waiter of this key
        auth.invalidate()  # what a moved epoch does, while the lookup is in flight
        await small.release(held)
        tenants = await asyncio.gather(lookup, *waiting)
        assert len({t.key_id for t in tenants}) == 1
        assert auth.cached(bearer(test_key)) is None  # read before the drop: not kept
        await auth.authenticate(bearer(test_key))
        assert auth.cached(bearer(test_key)) is not None
    finally:
        await small.close()


async def _account_on(settings: Settings) -> tuple[str, str, str]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return await create_account(conn, f"keys-{uuid.uuid4().hex[:6]}")
    finally:
        await conn.close()


def _proxied(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'root'}@127.0.0.1:{port}"))


async def test_the_watch_outlives_a_postgres_outage(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    _, test_key, _ = await _account(pool)
    db_url = settings.database_url.get_secret_value()
    target = urlsplit(db_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.restore()
    through = await asyncpg.create_pool(
        _proxied(db_url, proxy.port), min_size=1, max_size=2, timeout=1
    )
    auth = KeyAuthenticator(through, poll_s=0.05)
    await auth.poll_epoch()  # the first read drops the cache; then the watch takes over
    watch = asyncio.create_task(auth.watch())
    try:
        await auth.authenticate(bearer(test_key))
        with caplog.at_level(logging.WARNING, logger="domain.accounts"):
            await proxy.cut()
            await asyncio.sleep(0.5)
            assert not watch.done()
            # Postgres away: the cached key keeps working.
            assert auth.cached(bearer(test_key)) is not None
        assert any("cannot read the API key epoch" in r.getMessage() for r in caplog.records)
        warnings = [r for r in caplog.records if "API key epoch" in r.getMessage()]
        assert len(warnings) == 1  # said once per outage, not at every poll
        async with pool.acquire() as conn:
            await accounts.revoke_key(conn, test_key)
        await proxy.restore()
        deadline = time.monotonic() + 10
        while auth.cached(bearer(test_key)) is not None:
            assert time.monotonic() < deadline, "the watch never recovered"
            await asyncio.sleep(0.05)
        assert not watch.done()
    finally:
        watch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watch
        await proxy.cut()
        await through.close()
