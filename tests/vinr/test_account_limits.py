"""``vinr account limits``: sets an account's per-key rate limits and prints those in
effect; refuses values that are not positive whole numbers, and unknown accounts, with
exit status 2 and a message saying what is wrong."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import asyncpg
import pytest

from domain.accounts import create_account
from domain.ratelimit import Overrides
from domain.ratelimit.store import fetch_overrides
from infra import devenv
from infra.settings import Settings


def _limits(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vinr.cli", "account", "limits", *args],
        env=devenv.role_env(settings, VINR_LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
async def account(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        account_id, _, _ = await create_account(conn, f"cli-{uuid.uuid4().hex[:6]}")
    return account_id


async def _run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(_limits, settings, *args)


async def test_without_flags_it_prints_the_defaults(settings: Settings, account: str) -> None:
    done = await _run(settings, account)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "control: rate 100 (default), burst 200 (default)",
        "usage: rate 20000 (default), burst 20000 (default)",
    ]


async def test_it_sets_what_is_given_and_keeps_the_rest(
    settings: Settings, pool: asyncpg.Pool, account: str
) -> None:
    done = await _run(settings, account, "--control-rate", "5", "--usage-burst", "7")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [
        "control: rate 5 (account), burst 200 (default)",
        "usage: rate 20000 (default), burst 7 (account)",
    ]
    done = await _run(settings, account, "--usage-rate", "9")
    assert done.stdout.splitlines()[1:] == [
        "control: rate 5 (account), burst 200 (default)",
        "usage: rate 9 (account), burst 7 (account)",
    ]
    assert await fetch_overrides(pool, account) == Overrides(5, None, 9, 7)
    done = await _run(settings, account, "--reset", "--control-burst", "3")
    assert done.returncode == 0, done.stderr
    assert await fetch_overrides(pool, account) == Overrides(None, 3, None, None)


@pytest.mark.parametrize("value", ["0", "-3", "1.5", "ten", "1000000001"])
async def test_a_bad_value_is_refused_with_exit_2(
    settings: Settings, pool: asyncpg.Pool, account: str, value: str
) -> None:
    done = await _run(settings, account, "--usage-rate", value)
    assert done.returncode == 2
    assert "argument --usage-rate: must be a whole number from 1 to 1000000000" in done.stderr
    assert repr(value) in done.stderr
    assert await fetch_overrides(pool, account) == Overrides()


async def test_an_unknown_account_is_refused_with_exit_2(settings: Settings) -> None:
    done = await _run(settings, "acct_nope", "--usage-rate", "5")
    assert done.returncode == 2
    assert "no account 'acct_nope'" in done.stderr
    assert done.stdout == ""
