"""``vinr invoices``, ``vinr usage`` and ``vinr keys`` as an operator runs them, against the
session's stack: the same invoices and totals the API answers, plain columns when piped,
rich tables on a terminal."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from domain.accounts import create_account
from domain.currencies import format_amount
from infra import devenv
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.api import metered_price, post, subscribe
from tests.support.sqlscan import ROOT, string_literals
from tests.support.terminal import on_terminal

DAY = 86_400
# Midnight 100 days ago: two monthly periods from here are both over, so the current
# period's sparkline spans the whole period whatever the day the suite runs.
T0 = (int(time.time()) // DAY - 100) * DAY


def vinr(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vinr.cli", *args],
        env=devenv.role_env(settings, VINR_LOG_LEVEL="WARNING"),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(vinr, settings, *args)


def lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\x1b" not in done.stderr
    return done.stdout.splitlines()


def refused(done: subprocess.CompletedProcess[str], message: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and message in errors[0], done.stderr
    assert done.stdout == ""


@dataclass
class Billed:
    account: str
    client: httpx.AsyncClient
    sub: dict[str, Any]
    item: str
    other_sub: dict[str, Any]
    first_period: tuple[int, int]
    current_period: tuple[int, int]


async def _report(client: httpx.AsyncClient, item: str, quantity: int, ts: int) -> None:
    await post(
        client,
        "/v1/usage_records",
        {"subscriptionItem": item, "quantity": quantity, "timestamp": ts},
        key=uuid.uuid4().hex,
    )


async def _clock_to(client: httpx.AsyncClient, sub: dict[str, Any], ts: int) -> None:
    await post(
        client, f"/v1/test_helpers/test_clocks/{sub['testClock']}/advance", {"frozenTime": ts}
    )


@pytest.fixture
async def billed(
    api: str, pool: asyncpg.Pool, aggregator: Aggregator, invoicer: Invoicer
) -> AsyncIterator[Billed]:
    """An account with two subscriptions on test clocks: the first billed for one period
    (paid) and with usage in its current one, the second billed too (another customer)."""
    async with pool.acquire() as conn:
        account, key, _ = await create_account(conn, f"views-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(
        base_url=api, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        price = await metered_price(client)
        sub = await subscribe(client, price["id"], clock=T0)
        item = sub["items"]["data"][0]["id"]
        first = (sub["currentPeriodStart"], sub["currentPeriodEnd"])
        await _report(client, item, 12_000, T0 + 60)
        await _report(client, item, 5_000, T0 + 120)
        other = await subscribe(client, price["id"], clock=T0)
        await _report(client, other["items"]["data"][0]["id"], 100, T0 + 60)
        await aggregator.drain()
        for s in (sub, other):
            await post(client, f"/v1/test_helpers/subscriptions/{s['id']}/advance_period")
        assert await invoicer.tick() >= 2
        renewed = (await client.get(f"/v1/subscriptions/{sub['id']}")).json()
        current = (renewed["currentPeriodStart"], renewed["currentPeriodEnd"])
        assert current[0] == first[1]
        # Usage in the current period on days 0, 4 and 9 of it (the clock moves along).
        start = current[0]
        await _report(client, item, 10, start + 30)
        await _clock_to(client, sub, start + 4 * DAY + 3600)
        await _report(client, item, 20, start + 4 * DAY + 60)
        await _report(client, item, 5, start + 4 * DAY + 90)
        await _clock_to(client, sub, start + 9 * DAY + 3600)
        await _report(client, item, 40, start + 9 * DAY)
        await aggregator.drain()
        yield Billed(account, client, sub, item, other, first, current)


async def test_invoices_match_the_api_and_filter(settings: Settings, billed: Billed) -> None:
    listing = (await billed.client.get("/v1/invoices", params={"limit": 100})).json()["data"]
    assert len(listing) == 2
    shown = lines(await cli(settings, "invoices", billed.account))
    assert shown[0].split() == [
        "ID",
        "CUSTOMER",
        "SUBSCRIPTION",
        "PERIOD",
        "(UTC)",
        "STATUS",
        "TOTAL",
    ]
    rows = [line.split() for line in shown[1:]]
    day = time.strftime("%Y-%m-%d", time.gmtime(T0))
    expected = [
        [
            inv["id"],
            inv["customer"],
            inv["subscription"],
            time.strftime("%Y-%m-%d", time.gmtime(inv["periodStart"])),
            "→",
            time.strftime("%Y-%m-%d", time.gmtime(inv["periodEnd"])),
            inv["status"],
            format_amount(inv["total"], inv["currency"]),
        ]
        for inv in listing
    ]
    assert rows == expected  # newest first, as the API lists them
    mine = next(r for r in rows if r[2] == billed.sub["id"])
    assert mine[3] == day and mine[6] == "paid" and mine[7] == "€34.00"  # 17,000 × €0.002
    theirs = next(r for r in rows if r[2] == billed.other_sub["id"])
    assert theirs[6] == "paid" and theirs[7] == "€0.20"  # 100 × €0.002

    by_sub = lines(
        await cli(settings, "invoices", billed.account, "--subscription", billed.sub["id"])
    )
    assert [r.split()[0] for r in by_sub[1:]] == [mine[0]]
    customer = billed.other_sub["customer"]
    by_customer = lines(await cli(settings, "invoices", billed.account, "--customer", customer))
    assert [r.split()[1] for r in by_customer[1:]] == [customer]
    assert len(lines(await cli(settings, "invoices", billed.account, "--limit", "1"))) == 2
    assert len(lines(await cli(settings, "invoices", billed.account, "--status", "open"))) == 1
    live = lines(await cli(settings, "invoices", billed.account, "--live"))
    assert len(live) == 1 and live[0].startswith("ID")  # the header alone: none in live mode


async def test_invoices_refusals(settings: Settings, billed: Billed) -> None:
    refused(
        await cli(settings, "invoices", "acct_nope"), "vinr invoices: no such account: 'acct_nope'"
    )
    bad = await cli(settings, "invoices", billed.account, "--limit", "500")
    assert bad.returncode == 2 and "must be a whole number from 1 to 100" in bad.stderr
    assert "Traceback" not in bad.stderr


async def test_usage_periods_totals_and_sparkline(settings: Settings, billed: Billed) -> None:
    summaries = (
        await billed.client.get(
            "/v1/usage_records/summaries", params={"subscriptionItem": billed.item}
        )
    ).json()["data"]
    assert [s["totalUsage"] for s in summaries] == [75, 17_000]
    shown = lines(await cli(settings, "usage", billed.item))
    assert shown[0] == (
        f"subscription item {billed.item} of {billed.sub['id']} ({billed.account}, sandbox):"
        f" price {billed.sub['items']['data'][0]['price']['id']}, usage sum"
    )
    start, end = billed.current_period
    fmt = "%Y-%m-%d"
    current = f"{time.strftime(fmt, time.gmtime(start))} → {time.strftime(fmt, time.gmtime(end))}"
    assert shown[1] == f"current period {current}: 75 so far"
    # The period is over (its clock is 100 days behind), so the chart spans all of it, in
    # spans of a day: 10 on day 0, 25 on day 4, 40 on day 9 — heights relative to 40.
    days = math.ceil((end - start) / DAY)
    assert shown[2] == (
        f"usage per 1 day, {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(start))}"
        f" → {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(end))} UTC:"
    )
    marks = shown[3]
    assert len(marks) == days
    assert marks[0] == "▃" and marks[4] == "▆" and marks[9] == "█"  # marks 2, 5 and 7 of ▁…█
    assert set(marks[1:4] + marks[5:9] + marks[10:]) == {"▁"}
    assert shown[4].split() == ["PERIOD", "(UTC)", "TOTAL", "USAGE", "INVOICE"]
    first = f"{time.strftime(fmt, time.gmtime(billed.first_period[0]))} → {current.split(' → ')[0]}"
    assert [line.rsplit(None, 2) for line in shown[5:]] == [
        [current, "75", "current"],
        [first, "17000", summaries[1]["invoice"]],
    ]
    invoiced = await billed.client.get("/v1/invoices", params={"subscription": billed.sub["id"]})
    assert summaries[1]["invoice"] == invoiced.json()["data"][0]["id"]
    # The same with the account given; a mode with no such item is refused.
    assert lines(await cli(settings, "usage", billed.item, "--account", billed.account)) == shown
    refused(
        await cli(settings, "usage", billed.item, "--live"),
        f"no such subscription item: '{billed.item}'",
    )


async def test_usage_asks_which_item_when_several_share_an_id(
    settings: Settings, api: str, pool: asyncpg.Pool
) -> None:
    """Item ids are unique within an account and mode; two accounts may name one alike."""
    item_id = f"si_shared{uuid.uuid4().hex[:8]}"
    accounts = []
    for _ in range(2):
        async with pool.acquire() as conn:
            account, key, _ = await create_account(conn, f"shared-{uuid.uuid4().hex[:6]}")
        accounts.append(account)
        async with httpx.AsyncClient(
            base_url=api, timeout=30, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            price = await metered_price(client)
            customer = await post(client, "/v1/customers", {"name": "Ada"})
            await post(
                client,
                "/v1/subscriptions",
                {"customer": customer["id"], "items": [{"id": item_id, "price": price["id"]}]},
            )
    both = sorted(accounts)
    refused(
        await cli(settings, "usage", item_id),
        f"several items are named '{item_id}': {both[0]} (sandbox), {both[1]} (sandbox);"
        " choose one with --account ACCOUNT_ID and --live or --sandbox",
    )
    one = lines(await cli(settings, "usage", item_id, "--account", accounts[1]))
    assert f"({accounts[1]}, sandbox)" in one[0]
    # No usage yet: the current period is listed with 0 and a flat chart.
    assert one[1].endswith(": 0 so far") and set(one[3]) == {"▁"}
    refused(
        await cli(settings, "usage", "si_nope"), "vinr usage: no such subscription item: 'si_nope'"
    )


async def test_keys_is_key_list(settings: Settings, billed: Billed) -> None:
    listing = await cli(settings, "key", "list", billed.account)
    keys = await cli(settings, "keys", billed.account)
    assert lines(keys) == lines(listing)
    assert keys.stdout.splitlines()[0].split()[:3] == ["ID", "KIND", "MODE"]
    refused(await cli(settings, "keys", "acct_nope"), "vinr keys: no such account: 'acct_nope'")


async def test_tables_on_a_terminal(settings: Settings, billed: Billed) -> None:
    """On a terminal the same rows are drawn as a rich table, with a caption; the plain
    form's rows are all there."""
    env = devenv.role_env(settings, VINR_LOG_LEVEL="WARNING", NO_COLOR="1")
    for args, caption in (
        (["invoices", billed.account], f"2 sandbox invoice(s) of {billed.account}, newest first"),
        (["keys", billed.account], f"2 key(s) of {billed.account}, newest first"),
        (["usage", billed.item], "2 period(s), newest first"),
    ):
        ran = await asyncio.to_thread(
            on_terminal, [sys.executable, "-m", "vinr.cli", *args], env, columns=200
        )
        assert ran.returncode == 0, ran.stderr
        screen = ran.screen
        assert "─" * 20 in screen  # the rule under the header
        assert caption in screen
        drawn = [line.split() for line in screen.splitlines()]
        plain = lines(await cli(settings, *args))
        table = plain if args[0] != "usage" else plain[4:]
        for row in table:  # the header, then every row, cell by cell on one line
            assert row.split() in drawn, (row, screen)
        assert "\x1b[3" not in ran.terminal  # NO_COLOR: no colour, only bold and the like


def test_the_cli_holds_no_sql() -> None:
    """Commands read through the domain's stores; a query they need is added there."""
    statement = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", " FROM ")
    found = {
        path.relative_to(ROOT).as_posix(): hit
        for path in sorted((ROOT / "vinr" / "cli").glob("*.py"))
        for hit in string_literals(path.read_text())
        if any(word in hit for word in statement) and any(c.isupper() for c in hit[:8])
    }
    assert found == {}
