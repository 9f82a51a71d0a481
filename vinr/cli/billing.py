"""``vinr invoices`` and ``vinr usage``: what an account was billed and what an item used,
read from the stores the API answers from (the same invoices as ``GET /v1/invoices``, the
same totals as ``GET /v1/usage_records/summaries``)."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import asyncpg

from domain import accounts
from domain.currencies import format_amount
from domain.metering import PeriodUsage, span_levels
from domain.store import invoices as store
from domain.tenant import Tenant
from infra.db import create_pool
from infra.errors import InvalidRequest, NotFound
from infra.settings import Settings
from vinr.cli.common import refusing
from vinr.cli.output import Column, line, period, span_width, sparkline, table, when

__all__ = ["MARKS", "add_commands", "chart_until"]

MARKS = 48  # at most this many marks in a sparkline
_STATUSES = ("draft", "open", "paid", "uncollectible", "void")


def add_commands(sub: Any) -> None:
    """Register ``invoices`` and ``usage`` on ``vinr``'s subcommands."""
    invoices = sub.add_parser(
        "invoices",
        help="an account's invoices as a table, newest first",
        description="An account's invoices, newest first: id, customer, subscription,"
        " billing period (UTC), status and total in the invoice's currency. Sandbox"
        " invoices unless --live; the filters combine. On a terminal a table; piped,"
        " plain columns under a header line.",
        epilog="examples:\n  vinr invoices acct_123\n"
        "  vinr invoices acct_123 --customer cust_8aZ2 --limit 5\n"
        "  vinr invoices acct_123 --live --status open",
    )
    invoices.add_argument("account_id", metavar="ACCOUNT_ID", help="the account (acct_…)")
    invoices.add_argument(
        "--live", action="store_true", help="live-mode invoices (default: sandbox)"
    )
    invoices.add_argument(
        "--subscription", default=None, metavar="SUB_ID", help="only this subscription's (sub_…)"
    )
    invoices.add_argument(
        "--customer", default=None, metavar="CUSTOMER_ID", help="only this customer's (cust_…)"
    )
    invoices.add_argument(
        "--status", default=None, choices=_STATUSES, help="only invoices in this status"
    )
    invoices.add_argument(
        "--limit", type=_limit, default=20, metavar="N", help="at most N, 1 to 100 (default 20)"
    )
    invoices.set_defaults(handler=_invoices)
    usage = sub.add_parser(
        "usage",
        help="a subscription item's usage per period, with a sparkline of the current one",
        description="A subscription item's usage, period by period, newest first: the"
        " billable total (as the usage summaries and the invoice count it: summed, the"
        " largest, or the last quantity, as its price aggregates) and the invoice that"
        " billed it. Above the table, a sparkline of the current period: one mark per"
        " span of time (the span is named), its height the usage in that span.",
        epilog="examples:\n  vinr usage si_123\n"
        "  vinr usage si_123 --account acct_123 --live   # one of several items si_123",
    )
    usage.add_argument("item", metavar="ITEM_ID", help="the subscription item (si_…)")
    usage.add_argument(
        "--account", default=None, metavar="ACCOUNT_ID", help="the item's account (acct_…)"
    )
    mode = usage.add_mutually_exclusive_group()
    mode.add_argument("--live", action="store_true", help="the live-mode item of that id")
    mode.add_argument("--sandbox", action="store_true", help="the sandbox item of that id")
    usage.set_defaults(handler=_usage)


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 100, got {text!r}")
    return value


def _mode(livemode: bool) -> str:
    return "live" if livemode else "sandbox"


def _invoice_style(status: str) -> str:
    return {"paid": "green", "open": "yellow", "uncollectible": "red", "void": "dim"}.get(
        status, ""
    )


_INVOICE_COLUMNS = (
    Column("ID"),
    Column("CUSTOMER"),
    Column("SUBSCRIPTION"),
    Column("PERIOD (UTC)"),
    Column("STATUS", style=_invoice_style),
    Column("TOTAL", right=True),
)


def _invoices(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> None:
        pool = await create_pool(settings, min_size=1, max_size=1)
        try:
            await accounts.check_account(pool, args.account_id)
            listing = await store.invoice_page(
                pool,
                Tenant(args.account_id, args.live),
                limit=args.limit,
                subscription=args.subscription,
                customer=args.customer,
                status=args.status,
            )
        finally:
            await pool.close()
        rows = [
            (
                inv["id"],
                inv["customer"],
                inv["subscription"] or "-",
                period(inv["periodStart"], inv["periodEnd"]),
                inv["status"],
                format_amount(inv["total"], inv["currency"]),
            )
            for inv in listing["data"]
        ]
        more = "; more with a larger --limit" if listing["hasMore"] else ""
        table(
            _INVOICE_COLUMNS,
            rows,
            caption=f"{len(rows)} {_mode(args.live)} invoice(s) of {args.account_id},"
            f" newest first{more}",
        )

    return refusing("invoices", work)


async def _scope(pool: asyncpg.Pool, args: argparse.Namespace) -> Tenant:
    """The one account and mode whose item ``args.item`` is."""
    found = await store.usage_item_scopes(pool, args.item, args.account)
    if args.live or args.sandbox:
        found = [t for t in found if t.livemode == args.live]
    if not found:
        within = f" in {args.account}" if args.account else ""
        raise NotFound(f"no such subscription item: '{args.item}'{within}")
    if len(found) > 1:
        named = ", ".join(f"{t.account_id} ({_mode(t.livemode)})" for t in found)
        raise InvalidRequest(
            f"several items are named '{args.item}': {named}; choose one with --account"
            " ACCOUNT_ID and --live or --sandbox"
        )
    return found[0]


_LEVEL_WORDS = {
    "max": "largest quantity reported",
    "last_during_period": "quantity in effect",
    "last_ever": "quantity in effect",
}


def _usage(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> None:
        pool = await create_pool(settings, min_size=1, max_size=1)
        try:
            t = await _scope(pool, args)
            item = await store.usage_item(pool, t, args.item)
            if item is None:  # deleted between the two reads
                raise NotFound(f"no such subscription item: '{args.item}'")
            periods = await store.usage_periods(pool, item)
            current = next((p for p in periods if p.current), None)
            chart = await _chart(pool, item, current) if current is not None else None
        finally:
            await pool.close()
        aggregate = item["aggregate_usage"] or (
            "none (licensed: billed by quantity)" if item["usage_type"] == "licensed" else "sum"
        )
        line(
            f"subscription item {item['id']} of {item['subscription_id']}"
            f" ({t.account_id}, {_mode(t.livemode)}): price {item['price_id']},"
            f" usage {aggregate}",
            "bold",
        )
        if current is not None and chart is not None:
            marks, label, start, upto = chart
            what = _LEVEL_WORDS.get(aggregate, "usage")
            line(f"current period {period(current.start, current.end)}: {current.total} so far")
            line(f"{what} per {label}, {when(start)} → {when(upto)} UTC:")
            line(marks, "cyan")
        rows = [
            (
                period(p.start, p.end),
                str(p.total),
                p.invoice or ("current" if p.current else "-"),
            )
            for p in periods
        ]
        table(
            (Column("PERIOD (UTC)"), Column("TOTAL USAGE", right=True), Column("INVOICE")),
            rows,
            caption=f"{len(rows)} period(s), newest first",
        )

    return refusing("usage", work)


def chart_until(start: int, end: int, now: int, last_at: int | None) -> int:
    """Where the current period's chart ends: now, or the period's end once it is over;
    under a test clock ahead of real time, the latest usage (or the end, with none yet)."""
    if now >= end:
        return end
    if now > start:
        return min(end, max(now, last_at + 1 if last_at is not None else now))
    return end if last_at is None else min(end, last_at + 1)


async def _chart(
    pool: asyncpg.Pool, item: asyncpg.Record, current: PeriodUsage
) -> tuple[str, str, int, int]:
    """The current period's sparkline: (marks, span width, from, to)."""
    start = current.start
    upto = chart_until(start, current.end, int(time.time()), current.last_at)
    width, label = span_width(upto - start, MARKS)
    count = math.ceil((upto - start) / width)
    spans = await store.usage_slices(
        pool, item["pk"], start, start + width * count, count, upto=upto
    )
    return sparkline(span_levels(item["aggregate_usage"], spans, count)), label, start, upto
