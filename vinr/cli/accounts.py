"""``vinr account …``, ``vinr key …`` and ``vinr keys``: accounts, their API keys and their
rate limits, as an operator manages them.

A command that creates a key prints it alone on its last line (scripts take it with
``tail -n 1``); it is never shown again, and nothing else prints a key.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

import asyncpg

from infra.settings import Settings
from vinr.cli.common import refusing, subcommands
from vinr.cli.output import Column, table, when

__all__ = ["add_commands", "parse_duration"]


def add_commands(sub: Any) -> None:
    """Register ``account``, ``key`` and ``keys`` on ``vinr``'s subcommands."""
    account = sub.add_parser(
        "account",
        help="create accounts; set their rate limits",
        description="Accounts own everything else: customers, prices, subscriptions,"
        " invoices, keys. Each has a sandbox and a live mode, kept apart.",
    )
    account_sub = subcommands(account, "account_command")
    create = account_sub.add_parser(
        "create",
        help="create an account and its first keys; the sandbox key is the last line",
        description="Create an account with one secret key per mode. The live key is"
        " printed once, on its own labelled line; the sandbox key (sk_test_…) alone on the"
        " last line. Neither is shown again: store them now.",
        epilog='example:\n  export VINR_SECRET_KEY=$(vinr account create "Acme" | tail -n 1)',
    )
    create.add_argument("name", metavar="NAME", help="the account's name, for people")
    create.set_defaults(handler=_create_account)
    limits = account_sub.add_parser(
        "limits",
        help="show or set the account's per-key rate limits (requests/s and burst per plane)",
        description="Set the per-key rate limits of an account's keys and print the limits in"
        " effect. Values not given keep their current setting; --reset first returns every"
        " value to the deployment's default. Running API processes apply a change within"
        " 10 s.",
        epilog="examples:\n  vinr account limits acct_123                     # show them\n"
        "  vinr account limits acct_123 --usage-rate 50000 --usage-burst 100000\n"
        "  vinr account limits acct_123 --reset             # back to the defaults",
    )
    limits.add_argument("account_id", metavar="ACCOUNT_ID", help="the account (acct_…)")
    for flag, what in (
        ("--control-rate", "control-plane requests/s"),
        ("--control-burst", "control-plane burst"),
        ("--usage-rate", "usage-ingestion requests/s"),
        ("--usage-burst", "usage-ingestion burst"),
    ):
        limits.add_argument(flag, type=_positive, metavar="N", help=what)
    limits.add_argument(
        "--reset", action="store_true", help="return every value not given to the default"
    )
    limits.set_defaults(handler=_account_limits)
    _add_key_commands(sub)


def _add_key_commands(sub: Any) -> None:
    key = sub.add_parser(
        "key",
        help="create, list, revoke and roll API keys",
        description="API keys of an account: secret keys (sk_test_…, sk_live_…) may do"
        " everything; restricted keys (rk_test_…, rk_live_…) may only report usage and read"
        " usage summaries — give those to producers. Keys are stored as hashes: a new key is"
        " shown once, alone on the last line, and never again.",
    )
    key_sub = subcommands(key, "key_command")
    create = key_sub.add_parser(
        "create",
        help="a new key; printed alone on the last line",
        description="Create a key for the account, in sandbox mode unless --live. It is"
        " printed alone on the last line and never shown again.",
        epilog="examples:\n  vinr key create acct_123 --restricted --name producer\n"
        "  vinr key create acct_123 --live | tail -n 1 > live.key",
    )
    create.add_argument("account_id", metavar="ACCOUNT_ID", help="the account (acct_…)")
    create.add_argument("--live", action="store_true", help="a live-mode key (default: sandbox)")
    create.add_argument(
        "--restricted",
        action="store_true",
        help="an rk_ key that may only report usage and read its summaries",
    )
    create.add_argument(
        "--name", default=None, metavar="NAME", help="a label shown by `vinr key list`"
    )
    create.set_defaults(handler=_keys, key_command="create")
    listing = key_sub.add_parser(
        "list",
        help="the account's keys, both modes (no secrets); also `vinr keys`",
        description=_LIST_DESCRIPTION,
        epilog="example:\n  vinr key list acct_123 | grep active",
    )
    listing.add_argument("account_id", metavar="ACCOUNT_ID", help="the account (acct_…)")
    listing.set_defaults(handler=_keys, key_command="list")
    revoke = key_sub.add_parser(
        "revoke",
        help="revoke a key (its key_… id or the key)",
        description="Revoke a key at once: every API process refuses it within 2 s."
        " Revoking a revoked key says so and succeeds.",
        epilog="example:\n  vinr key revoke key_1a2b3c",
    )
    revoke.add_argument("key", metavar="KEY_OR_ID", help="the key's id (key_…) or the key itself")
    revoke.set_defaults(handler=_keys, key_command="revoke")
    roll = key_sub.add_parser(
        "roll",
        help="replace a key; printed alone on the last line",
        description="Create a key like this one (same account, mode, kind and name),"
        " printed alone on the last line. The old key keeps working for --expire-in, so"
        " producers can switch over, then stops; by default it stops now.",
        epilog="example:\n  vinr key roll key_1a2b3c --expire-in 24h | tail -n 1",
    )
    roll.add_argument("key", metavar="KEY_OR_ID", help="the key's id (key_…) or the key itself")
    roll.add_argument(
        "--expire-in",
        default="0",
        metavar="DURATION",
        help="how long the old key keeps working: 30m, 24h, 7d (default 0: it stops now)",
    )
    roll.set_defaults(handler=_keys, key_command="roll")
    keys = sub.add_parser(
        "keys",
        help="the account's API keys as a table (the same as `vinr key list`)",
        description=_LIST_DESCRIPTION,
        epilog="example:\n  vinr keys acct_123",
    )
    keys.add_argument("account_id", metavar="ACCOUNT_ID", help="the account (acct_…)")
    keys.set_defaults(handler=_keys, key_command="list")


_LIST_DESCRIPTION = (
    "Every key of the account, both modes, newest first: id, kind (secret or restricted),"
    " mode, hint (the key's first and last characters), name, when it was created and"
    " when it expires (UTC), and its status (active, expired, revoked). Never a secret. On"
    " a terminal a table; piped, plain columns under a header line."
)

_DURATION = re.compile(r"(\d{1,9})([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> int:
    """Seconds of a duration written ``30s``, ``30m``, ``24h``, ``7d`` or ``0``."""
    if text == "0":
        return 0
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(
            f"'{text}' is not a duration: write a whole number and a unit, s, m, h or d"
            " (30m, 24h, 7d), or 0 for now"
        )
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def _positive(text: str) -> int:
    """argparse type of a rate-limit value; a refusal exits 2 naming the flag."""
    from infra.settings import MAX_RATE_LIMIT

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_RATE_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_RATE_LIMIT}, got {text!r}"
        )
    return value


def _kind(key: Any) -> str:
    return f"{key.kind}, {'live mode' if key.livemode else 'sandbox'}"


def _status_style(status: str) -> str:
    return {"active": "green", "expired": "yellow", "revoked": "red"}.get(status, "")


_KEY_COLUMNS = (
    Column("ID"),
    Column("KIND"),
    Column("MODE"),
    Column("HINT"),
    Column("NAME"),
    Column("CREATED (UTC)"),
    Column("EXPIRES (UTC)"),
    Column("STATUS", style=_status_style),
)


def _keys(settings: Settings, args: argparse.Namespace) -> int:
    """``vinr key …`` and ``vinr keys``: a refusal is one line on stderr and exit code 2."""
    command = args.key_command
    name = "keys" if args.command == "keys" else f"key {command}"

    async def work() -> None:
        expire_in = parse_duration(args.expire_in) if command == "roll" else 0
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            await _key_run(conn, args, expire_in)
        finally:
            await conn.close()

    return refusing(name, work)


async def _key_run(conn: asyncpg.Connection[Any], args: argparse.Namespace, expire_in: int) -> None:
    from domain import accounts

    command = args.key_command
    if command == "create":
        new = await accounts.create_key(
            conn,
            args.account_id,
            livemode=args.live,
            restricted=args.restricted,
            name=args.name,
        )
        print(f"{new.key.id} created ({_kind(new.key)}) for {new.key.account_id}")
        print("store it now, it is not shown again:")
        print(new.secret)
    elif command == "list":
        keys = await accounts.list_keys(conn, args.account_id)
        now = time.time()
        table(
            _KEY_COLUMNS,
            [
                (
                    k.id,
                    k.kind,
                    "live" if k.livemode else "sandbox",
                    k.hint,
                    k.name,
                    when(k.created),
                    when(k.expires_at),
                    k.status(now),
                )
                for k in keys
            ],
            caption=f"{len(keys)} key(s) of {args.account_id}, newest first",
        )
    elif command == "revoke":
        before = await accounts.find_key(conn, args.key)
        key = await accounts.revoke_key(conn, args.key)
        if before is not None and before.revoked:
            print(f"{key.describe()} was already revoked")
        else:
            print(f"revoked {key.describe()} ({_kind(key)}) of {key.account_id}")
    else:
        new, old = await accounts.roll_key(conn, args.key, expire_in_s=expire_in)
        if old.status(time.time()) == "active":
            print(f"rolled {old.describe()}: it works until {when(old.expires_at)} UTC")
        else:
            print(f"rolled {old.describe()}: it stopped working")
        print(f"{new.key.id} created ({_kind(new.key)}); store it now, it is not shown again:")
        print(new.secret)


def _create_account(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from domain.accounts import create_account

    async def work() -> tuple[str, str, str]:
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            return await create_account(conn, args.name)
        finally:
            await conn.close()

    try:
        account_id, test_key, live_key = asyncio.run(work())
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"vinr account: {exc}", file=sys.stderr)
        return 1
    print(f"account {account_id} ({args.name})")
    print(f"live key (store it now, it is not shown again): {live_key}")
    print("sandbox key:")
    print(test_key)
    return 0


def _account_limits(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    try:
        return asyncio.run(_limits(settings, args))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"vinr account: {exc}", file=sys.stderr)
        return 1


async def _limits(settings: Settings, args: argparse.Namespace) -> int:
    from domain.ratelimit import Plane, limits_in_effect
    from domain.ratelimit.store import FIELDS, set_overrides

    values = {f: getattr(args, f) for f in FIELDS if getattr(args, f) is not None}
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        overrides = await set_overrides(conn, args.account_id, values, reset=args.reset)
    finally:
        await conn.close()
    if overrides is None:
        print(f"vinr account limits: no account {args.account_id!r}", file=sys.stderr)
        return 2
    effect = limits_in_effect(settings, overrides)
    print(f"rate limits of every key of {args.account_id} (requests/s, burst):")
    for plane in Plane:
        limit = effect[plane]
        rate, burst = (
            "account" if overrides.value(plane, what) is not None else "default"
            for what in ("rate", "burst")
        )
        print(f"{plane.value}: rate {limit.rate} ({rate}), burst {limit.burst} ({burst})")
    return 0
