"""Operator commands for the aggregator's data, wired into ``vinr`` (``vinr.cli``).

vinr watermark [--wait S]            per partition: stored offset, end offset, lag;
                                     exit 0 when caught up, 1 when not (after S seconds)
vinr deadletters list [--item si_…] [--reason R] [--limit N]
                                     dead-lettered requests, newest first (JSON lines)
vinr replay [--item si_…] [--check]  rebuild open windows from the ledger (--check only
                                     reports windows that differ)
vinr retention                       purge points and ledger rows of windows closed
                                     longer than the idempotency TTL ago

Replay and retention show a progress bar on stderr when it is a terminal (``infra.progress``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg
import orjson

from infra import progress
from infra.settings import Settings

__all__ = ["COMMANDS", "add_commands", "run_command"]

COMMANDS = ("watermark", "deadletters", "replay", "retention")


def add_commands(sub: Any) -> None:
    """Register the commands on ``vinr``'s subparsers."""
    wm = sub.add_parser(
        "watermark",
        help="has the aggregator consumed the whole topic?",
        description="Per partition of the usage topic: the offset the aggregator stored in"
        " Postgres, the topic's end offset, and the lag between them. Exit status 0 when"
        " every partition is caught up, 1 when one is behind (after --wait).",
        epilog="example:\n  vinr watermark --wait 30   # in a deploy script, before invoicing",
    )
    wm.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for the aggregator to catch up",
    )
    dl = sub.add_parser(
        "deadletters",
        help="usage the aggregator could not fold",
        description="Requests the aggregator could not fold into a window: usage for a"
        " period already invoiced (it arrived after the window closed), or records that"
        " are not valid.",
    )
    dl_sub = dl.add_subparsers(dest="deadletters_command", required=True, metavar="COMMAND")
    listing = dl_sub.add_parser(
        "list",
        help="newest first, as JSON lines",
        description="Dead letters newest first, one JSON object a line on stdout; the count"
        " goes to stderr.",
        epilog="example:\n  vinr deadletters list --item si_123 --reason period_invoiced | jq .",
    )
    listing.add_argument(
        "--item", default=None, metavar="ITEM_ID", help="only this subscription item (si_…)"
    )
    listing.add_argument(
        "--reason",
        default=None,
        choices=("period_invoiced", "invalid_records"),
        help="only dead letters of this reason",
    )
    listing.add_argument(
        "--limit", type=int, default=100, metavar="N", help="at most N (default 100)"
    )
    replay = sub.add_parser(
        "replay",
        help="rebuild open usage windows from the ledger",
        description="Recompute every open usage window (or one item's) from the ledger,"
        " which holds every accepted request's records, and rewrite the windows that"
        " differ. Closed windows are never touched. Safe beside running aggregators."
        " With --check nothing changes and the exit status is 1 when a window differs.",
        epilog="examples:\n  vinr replay --check            # does any window differ?\n"
        "  vinr replay --item si_123      # rebuild one item's open window",
    )
    replay.add_argument(
        "--item", default=None, metavar="ITEM_ID", help="only this subscription item (si_…)"
    )
    replay.add_argument(
        "--check",
        action="store_true",
        help="report windows that differ from the ledger; change nothing",
    )
    sub.add_parser(
        "retention",
        help="purge points and ledger rows of long-closed windows",
        description="Delete the per-timestamp points and the ledger rows of windows closed"
        " by their invoice longer than VINR_IDEMPOTENCY_TTL_S ago; the window totals stay"
        " (summaries read them). The aggregator runs this itself; run it by hand after a"
        " long outage. Safe beside running aggregators.",
    )


async def _item_pks(conn: asyncpg.Connection[Any], item: str | None) -> list[int] | None:
    if item is None:
        return None
    rows = await conn.fetch("SELECT pk FROM subscription_items WHERE id = $1", item)
    if not rows:
        raise SystemExit(f"vinr: no such subscription item: {item}")
    return [r["pk"] for r in rows]


async def run_command(settings: Settings, args: argparse.Namespace) -> int:
    """Run one of ``COMMANDS``; the process exit code."""
    if args.command == "watermark":
        return await _watermark(settings, args.wait)
    from infra.db import create_pool

    pool = await create_pool(settings, min_size=1, max_size=2)
    try:
        if args.command == "deadletters":
            from domain.deadletters import list_dead_letters

            async with pool.acquire() as conn:
                pks = await _item_pks(conn, args.item)
            targets: list[int | None] = list(pks) if pks is not None else [None]
            rows: list[dict[str, Any]] = []
            for pk in targets:
                rows += await list_dead_letters(
                    pool, item_pk=pk, reason=args.reason, limit=args.limit
                )
            for row in rows:
                sys.stdout.write(orjson.dumps(row).decode() + "\n")
            print(f"{len(rows)} dead letter(s)", file=sys.stderr)
            return 0
        if args.command == "replay":
            from aggregator.replay import rebuild_windows

            async with pool.acquire() as conn:
                pks = await _item_pks(conn, args.item)
            what = "checking open windows" if args.check else "rebuilding open windows"
            with progress.bar(what) as report:
                rebuilt = await rebuild_windows(
                    pool, item_pks=pks, write=not args.check, progress=report
                )
            changed = [r for r in rebuilt if r.changed]
            for r in changed:
                verb = "differs" if args.check else "rebuilt"
                points = " (usage map differs)" if r.points_differ else ""
                print(
                    f"window (item {r.item_pk}, period {r.period_start}) {verb}:"
                    f" {r.before} -> {r.after}{points}"
                )
            skipped = sum(r.skipped for r in rebuilt)
            print(
                f"{len(rebuilt)} open window(s) checked, {len(changed)}"
                f" {'differ' if args.check else 'rebuilt'}, {skipped} ledger request(s)"
                " without usable records"
            )
            return 1 if args.check and changed else 0
        from aggregator.retention import purge_closed_windows

        with progress.bar("purging closed windows") as report:
            purged = await purge_closed_windows(
                pool,
                ledger_ttl_s=settings.idempotency_ttl_s,
                progress=report if progress.shown() else None,
            )
        print(
            f"purged {purged.windows} closed window(s): {purged.points} point(s),"
            f" {purged.ledger} ledger row(s)"
        )
        return 0
    finally:
        await pool.close()


async def _watermark(settings: Settings, wait_s: float) -> int:
    from domain.watermark import Watermark
    from infra.db import create_pool

    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        async with Watermark(settings, pool) as watermark:
            ends = await watermark.end_offsets()
            deadline = asyncio.get_running_loop().time() + wait_s
            while True:
                rows = await watermark.progress(ends)
                done = all(r.caught_up for r in rows)
                if done or asyncio.get_running_loop().time() >= deadline:
                    break
                await asyncio.sleep(0.1)
    finally:
        await pool.close()
    print(f"topic {settings.usage_topic}, group {settings.consumer_group}")
    print("partition  stored      end         lag")
    for r in rows:
        stored = "-" if r.stored is None else str(r.stored)
        print(f"{r.partition:<10} {stored:<11} {r.end:<11} {r.lag}")
    print("caught up" if done else "behind")
    return 0 if done else 1
