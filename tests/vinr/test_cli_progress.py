"""Progress bars of long work (migrations, replay, retention, timed load runs): drawn on
stderr when it is a terminal, never on stdout, and nothing at all when stderr is a pipe."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from infra import devenv
from infra.db import migration_files
from infra.devenv import postgres_root
from infra.settings import Settings
from tests.support.api import metered_price, post, subscribe
from tests.support.terminal import on_terminal

CLI = [sys.executable, "-m", "vinr.cli"]


@pytest.fixture
async def fresh_dsn() -> AsyncIterator[str]:
    """A database name nobody created yet; dropped afterwards."""
    name = f"vinr_progress_{uuid.uuid4().hex[:8]}"
    yield f"{postgres_root()}/{name}"
    admin = await asyncpg.connect(f"{postgres_root()}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    return devenv.role_env(settings, VINR_LOG_LEVEL="WARNING", **extra)


async def test_migrate_draws_its_bar_on_a_terminal_stderr(
    settings: Settings, fresh_dsn: str
) -> None:
    ran = await asyncio.to_thread(
        on_terminal,
        [*CLI, "migrate"],
        _env(settings, VINR_DATABASE_URL=fresh_dsn),
        stdout=False,
        stderr=True,
    )
    assert ran.returncode == 0, ran.screen
    names = [name for _, name, _ in migration_files()]
    # stdout, a pipe, holds the result alone, with no escape sequence
    assert ran.stdout == f"migrations applied: {', '.join(names)}\n"
    screen = ran.screen
    assert "created database" in screen
    assert "applying migrations" in screen
    assert f"{len(names)}/{len(names)}" in screen  # the bar's count when it finished


async def test_no_bar_when_stderr_is_a_pipe(settings: Settings, fresh_dsn: str) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [*CLI, "migrate"],
        env=_env(settings, VINR_DATABASE_URL=fresh_dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "created database\n"
    assert "\x1b" not in done.stdout and done.stdout.startswith("migrations applied: 001_")


async def test_replay_and_retention_bars(
    settings: Settings, client: httpx.AsyncClient, aggregator: Aggregator
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    item = sub["items"]["data"][0]["id"]
    await post(
        client,
        "/v1/usage_records",
        {"subscriptionItem": item, "quantity": 3, "timestamp": int(time.time())},
        key=uuid.uuid4().hex,
    )
    await aggregator.drain()
    ran = await asyncio.to_thread(
        on_terminal,
        [*CLI, "replay", "--check", "--item", item],
        _env(settings),
        stdout=False,
        stderr=True,
    )
    assert ran.returncode == 0, ran.screen
    assert ran.stdout == (
        "1 open window(s) checked, 0 differ, 0 ledger request(s) without usable records\n"
    )
    assert "checking open windows" in ran.screen and "1/1" in ran.screen
    ran = await asyncio.to_thread(
        on_terminal, [*CLI, "retention"], _env(settings), stdout=False, stderr=True
    )
    assert ran.returncode == 0, ran.screen
    assert ran.stdout.startswith("purged 0 closed window(s)")
    assert "purging closed windows" in ran.screen


def test_a_timed_bar() -> None:
    """The bar of work of known length (a load run in another process) fills with time."""
    script = (
        "import asyncio\n"
        "from infra.progress import timed\n"
        "async def main():\n"
        "    async with timed('load: 0.5 s run', 0.5):\n"
        "        await asyncio.sleep(0.6)\n"
        "    print('done')\n"
        "asyncio.run(main())\n"
    )
    ran = on_terminal([sys.executable, "-c", script], {"PATH": "/usr/bin:/bin"}, stderr=True)
    assert ran.returncode == 0, ran.screen
    assert "load: 0.5 s run" in ran.screen and "done" in ran.screen
    piped = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert (piped.stdout, piped.stderr) == ("done\n", "")
