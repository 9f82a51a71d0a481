"""``vinr key …`` as an operator runs it, and revocation reaching a running ``vinr api``
process — its key cache warm — within 2 s."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx
import pytest

from domain import accounts
from domain.accounts import create_account
from infra.devenv import free_port
from infra.settings import Settings
from tests.support.api import metered_price, subscribe
from tests.vinr.test_roles import _reap, _spawn, _stop, _wait_ready, role_env


def vinr(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vinr.cli", *args],
        env=role_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    """Exit 2, one line on stderr saying ``message``, no traceback."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


async def _account(settings: Settings) -> tuple[str, str, str]:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        return await create_account(conn, f"cli-{uuid.uuid4().hex[:6]}")
    finally:
        await conn.close()


async def test_create_list_revoke_roll(settings: Settings) -> None:
    account, test_key, live_key = await _account(settings)
    sandbox = last_line(vinr(settings, "key", "create", account, "--name", "ci"))
    live_rk = last_line(vinr(settings, "key", "create", account, "--live", "--restricted"))
    assert sandbox.startswith("sk_test_") and " " not in sandbox
    assert live_rk.startswith("rk_live_") and " " not in live_rk
    listing = vinr(settings, "key", "list", account)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.strip().splitlines()
    assert lines[0].split() == [
        "ID", "KIND", "MODE", "HINT", "NAME", "CREATED", "(UTC)", "EXPIRES", "(UTC)", "STATUS"
    ]  # fmt: skip
    assert len(lines) == 5
    for secret in (test_key, live_key, sandbox, live_rk):
        assert secret not in listing.stdout
        assert f"{secret[:8]}…{secret[-4:]}" in listing.stdout
    rows = {line.split()[3]: line.split() for line in lines[1:]}
    ci = rows[f"{sandbox[:8]}…{sandbox[-4:]}"]
    assert (ci[1], ci[2], ci[4], ci[-1]) == ("secret", "sandbox", "ci", "active")
    rk = rows[f"{live_rk[:8]}…{live_rk[-4:]}"]
    assert (rk[1], rk[2], rk[-1]) == ("restricted", "live", "active")

    # Roll by the key itself, with an overlap; the old key keeps working until then.
    rolled = vinr(settings, "key", "roll", sandbox, "--expire-in", "24h")
    new = last_line(rolled)
    assert new.startswith("sk_test_") and new != sandbox
    assert "works until" in rolled.stdout and sandbox not in rolled.stdout.replace(new, "")
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        old = await accounts.find_key(conn, sandbox)
        replacement = await accounts.find_key(conn, new)
    finally:
        await conn.close()
    assert old is not None and replacement is not None
    assert old.status(time.time()) == "active" and old.expires_at is not None
    assert 86_400 - 60 <= old.expires_at - time.time() <= 86_400
    assert (replacement.kind, replacement.name, replacement.expires_at) == ("secret", "ci", None)

    # Revoke by id; then by the key; revoking twice says so.
    done = vinr(settings, "key", "revoke", old.id)
    assert done.returncode == 0 and f"revoked {old.id}" in done.stdout
    again = vinr(settings, "key", "revoke", sandbox)
    assert again.returncode == 0 and "already revoked" in again.stdout
    rolled_rk = last_line(vinr(settings, "key", "roll", live_rk))
    assert rolled_rk.startswith("rk_live_")
    statuses = [
        line.split()[-1] for line in vinr(settings, "key", "list", account).stdout.splitlines()[1:]
    ]
    assert sorted(statuses) == ["active", "active", "active", "active", "expired", "revoked"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("key", "roll", "key_nope", "--expire-in", "24x"), "'24x' is not a duration"),
        (("key", "roll", "key_nope", "--expire-in=-1h"), "is not a duration"),
        (("key", "roll", "key_nope", "--expire-in", "31d"), "0 to 2592000 seconds"),
        (("key", "roll", "key_nope"), "no such API key: 'key_nope'"),
        (("key", "revoke", "key_nope"), "no such API key"),
        (("key", "revoke", "sk_test_notakeyatall0000"), "no such API key: 'sk_test_…0000'"),
        (("key", "create", "acct_nope"), "no such account: 'acct_nope'"),
        (("key", "list", "acct_nope"), "no such account"),
    ],
)
async def test_errors_are_one_line_and_exit_2(
    settings: Settings, args: tuple[str, ...], message: str
) -> None:
    done = vinr(settings, *args)
    refused(done, message)
    assert "sk_test_notakeyatall0000" not in done.stderr


async def test_a_bad_name_is_refused(settings: Settings) -> None:
    account, _, _ = await _account(settings)
    refused(vinr(settings, "key", "create", account, "--name", "x" * 101), "name must be 1 to 100")
    refused(vinr(settings, "key", "create", account, "--name", ""), "name must be 1 to 100")


async def _until_refused(http: httpx.AsyncClient, request: object, started: float) -> float:
    """Seconds from ``started`` until the request answers 401 (fails past 2 s)."""
    while True:
        response = await request()  # type: ignore[operator]
        elapsed = time.monotonic() - started
        if response.status_code == 401:
            return elapsed
        assert response.status_code == 200, response.text
        assert elapsed <= 2.0, f"a revoked key still worked {elapsed:.2f} s later"
        await asyncio.sleep(0.02)


async def test_revocation_reaches_a_running_api_process_within_2_s(settings: Settings) -> None:
    account, test_key, _ = await _account(settings)
    port = free_port()
    proc = await _spawn("api", "--port", str(port), env=role_env(settings))
    try:
        await _wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=base, timeout=10, headers={"Authorization": f"Bearer {test_key}"}
        ) as admin:
            price = await metered_price(admin)
            item = (await subscribe(admin, price["id"]))["items"]["data"][0]["id"]
            keys = [last_line(vinr(settings, "key", "create", account)) for _ in range(2)]
            keys.append(last_line(vinr(settings, "key", "create", account, "--restricted")))
        clients = [
            httpx.AsyncClient(base_url=base, timeout=10, headers={"Authorization": f"Bearer {k}"})
            for k in keys
        ]
        try:
            control, by_cli, producer = clients

            def usage() -> object:
                return producer.post(
                    "/v1/usage_records",
                    json={"subscriptionItem": item, "quantity": 1, "timestamp": int(time.time())},
                )

            # Warm: each key has been looked up and is served from the process's cache.
            for _ in range(3):
                assert (await control.get("/v1/products")).status_code == 200
                assert (await by_cli.get("/v1/products")).status_code == 200
                accepted = await usage()  # type: ignore[misc]
                assert accepted.status_code == 200, accepted.text

            # Revoked through the domain, on a connection of this test process.
            conn = await asyncpg.connect(settings.database_url.get_secret_value())
            try:
                await accounts.revoke_key(conn, keys[0])
                started = time.monotonic()
                await accounts.revoke_key(conn, keys[2])
                producer_started = time.monotonic()
            finally:
                await conn.close()
            assert await _until_refused(control, lambda: control.get("/v1/products"), started) <= 2
            assert await _until_refused(producer, usage, producer_started) <= 2

            # Revoked by the CLI, a process of its own: timed from its exit.
            assert (await by_cli.get("/v1/products")).status_code == 200
            done = vinr(settings, "key", "revoke", keys[1])
            cli_done = time.monotonic()
            assert done.returncode == 0, done.stderr
            assert await _until_refused(by_cli, lambda: by_cli.get("/v1/products"), cli_done) <= 2
            assert (
                (await by_cli.get("/v1/products"))
                .json()["error"]["message"]
                .startswith("this API key was revoked")
            )
        finally:
            for c in clients:
                await c.aclose()
        assert await _stop(proc) == 0
    finally:
        await _reap(proc)
