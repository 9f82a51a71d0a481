"""The ``vinr`` command: one entry point per role, plus set-up and dev helpers.

vinr migrate                 apply the schema (idempotent)
vinr account create NAME     new account; prints its sandbox key on the last line
vinr key create ACCOUNT_ID [--live] [--restricted] [--name N]
                             a new key, alone on the last line
vinr key list ACCOUNT_ID     the account's keys (never a secret)
vinr key revoke KEY_OR_ID    refused everywhere within 2 s
vinr key roll KEY_OR_ID [--expire-in 24h]
                             a new key like it, alone on the last line; the old one works
                             until the expiry (default: stops now)
vinr account limits ACCOUNT_ID [--control-rate N] [--control-burst N] [--usage-rate N]
                    [--usage-burst N] [--reset]
                             set the account's per-key rate limits; prints those in effect
vinr api [--host H] [--port N]
vinr aggregator [--partitions 0,1 | --group]
vinr watermark | deadletters list | replay | retention   (see aggregator.commands)
vinr invoicer
vinr dispatcher
vinr up [--port N]           all roles in one process (dev); starts the dev broker if
                             VINR_KAFKA_BOOTSTRAP is unset
vinr devbroker               the in-memory dev Kafka broker; prints its address
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import ValidationError

from infra.settings import Settings, describe_errors
from infra.telemetry import setup_logging
from vinr.roles import Worker

__all__ = ["main"]

log = logging.getLogger("vinr")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vinr", description="vinr usage-based billing")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations (idempotent)")
    account = sub.add_parser("account", help="manage accounts")
    account_sub = account.add_subparsers(dest="account_command", required=True)
    create = account_sub.add_parser("create", help="create an account and its API keys")
    create.add_argument("name")
    limits = account_sub.add_parser(
        "limits",
        help="show or set the account's per-key rate limits (requests/s and burst per plane)",
        description="Set the per-key rate limits of an account's keys and print the limits in"
        " effect. Values not given keep their current setting; --reset first returns every"
        " value to the deployment's default. Running API processes apply a change within"
        " 10 s.",
    )
    limits.add_argument("account_id", metavar="ACCOUNT_ID")
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
    _add_key_commands(sub)
    for name, text in (
        ("api", "serve the HTTP API (ingest + control plane)"),
        ("up", "run every role in one process (development)"),
    ):
        role = sub.add_parser(name, help=text)
        role.add_argument("--host", default=None)
        role.add_argument("--port", type=int, default=None)
    agg = sub.add_parser("aggregator", help="fold usage from Kafka into Postgres windows")
    agg.add_argument(
        "--partitions", default=None, help="comma-separated partitions to own (default: all)"
    )
    agg.add_argument(
        "--group",
        action="store_true",
        help="share partitions through Kafka consumer-group membership",
    )
    from aggregator.commands import add_commands

    add_commands(sub)
    sub.add_parser("invoicer", help="close periods, invoice, charge, dun")
    sub.add_parser("dispatcher", help="deliver webhooks")
    sub.add_parser("devbroker", help="run the in-memory dev Kafka broker (not durable)")
    return parser


def _add_key_commands(sub: Any) -> None:
    key = sub.add_parser("key", help="manage API keys")
    key_sub = key.add_subparsers(dest="key_command", required=True)
    create = key_sub.add_parser("create", help="a new key; printed alone on the last line")
    create.add_argument("account_id", metavar="ACCOUNT_ID")
    create.add_argument("--live", action="store_true", help="a live-mode key (default: sandbox)")
    create.add_argument(
        "--restricted",
        action="store_true",
        help="an rk_ key that may only report usage and read its summaries",
    )
    create.add_argument("--name", default=None, help="a label shown by `vinr key list`")
    listing = key_sub.add_parser("list", help="the account's keys, both modes (no secrets)")
    listing.add_argument("account_id", metavar="ACCOUNT_ID")
    revoke = key_sub.add_parser("revoke", help="revoke a key (its key_… id or the key)")
    revoke.add_argument("key", metavar="KEY_OR_ID")
    roll = key_sub.add_parser("roll", help="replace a key; printed alone on the last line")
    roll.add_argument("key", metavar="KEY_OR_ID")
    roll.add_argument(
        "--expire-in",
        default="0",
        metavar="DURATION",
        help="how long the old key keeps working: 30m, 24h, 7d (default 0: it stops now)",
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


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _printable(text: str | None) -> str:
    return "-" if text is None else "".join(c if c.isprintable() else "?" for c in text)


def _kind(key: Any) -> str:
    return f"{key.kind}, {'live mode' if key.livemode else 'sandbox'}"


async def _key_command(settings: Settings, args: argparse.Namespace) -> int:
    """``vinr key …``: errors are one line on stderr and exit code 2."""
    from infra.errors import VinrError

    command = args.key_command
    try:
        expire_in = parse_duration(args.expire_in) if command == "roll" else 0
        conn = await asyncpg.connect(settings.database_url.get_secret_value())
        try:
            await _key_run(conn, args, expire_in)
        finally:
            await conn.close()
    except (ValueError, VinrError) as exc:
        print(f"vinr key {command}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    except asyncpg.DataError as exc:
        print(f"vinr key {command}: a value cannot be stored: {exc}", file=sys.stderr)
        return 2
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"vinr key {command}: Postgres: {exc}", file=sys.stderr)
        return 2
    return 0


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
        rows = [
            (
                k.id,
                k.kind,
                "live" if k.livemode else "sandbox",
                k.hint,
                _printable(k.name),
                _when(k.created),
                _when(k.expires_at),
                k.status(time.time()),
            )
            for k in await accounts.list_keys(conn, args.account_id)
        ]
        header = ("ID", "KIND", "MODE", "HINT", "NAME", "CREATED (UTC)", "EXPIRES (UTC)", "STATUS")
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
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
            print(f"rolled {old.describe()}: it works until {_when(old.expires_at)} UTC")
        else:
            print(f"rolled {old.describe()}: it stopped working")
        print(f"{new.key.id} created ({_kind(new.key)}); store it now, it is not shown again:")
        print(new.secret)


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


async def _migrate(settings: Settings) -> None:
    from infra.db import apply_migrations, ensure_database

    dsn = settings.database_url.get_secret_value()
    if await ensure_database(dsn):
        print("created database", file=sys.stderr)
    conn = await asyncpg.connect(dsn)
    try:
        applied = await apply_migrations(conn)
    finally:
        await conn.close()
    print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


async def _create_account(settings: Settings, name: str) -> None:
    from domain.accounts import create_account

    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        account_id, test_key, live_key = await create_account(conn, name)
    finally:
        await conn.close()
    print(f"account {account_id} ({name})")
    print(f"live key (store it now, it is not shown again): {live_key}")
    print("sandbox key:")
    print(test_key)


async def _account_limits(settings: Settings, args: argparse.Namespace) -> int:
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


def _devbroker() -> int:
    from infra.devbroker import DevBroker, DevBrokerUnavailable

    broker = DevBroker()
    try:
        address = broker.start()
    except DevBrokerUnavailable as exc:
        print(f"vinr devbroker: {exc}", file=sys.stderr)
        return 2
    print(address, flush=True)
    stop = threading.Event()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"vinr: invalid configuration:\n{describe_errors(exc)}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json)
    command = args.command
    if command == "devbroker":
        return _devbroker()
    if command == "key":
        return asyncio.run(_key_command(settings, args))
    from aggregator.commands import COMMANDS, run_command

    if command in COMMANDS:
        return asyncio.run(run_command(settings, args))
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    from vinr import roles

    if command in ("api", "up", "aggregator"):
        roles.tune_gc()
    broker = None
    if command == "up" and not settings.kafka_bootstrap:
        from infra.devbroker import DevBroker, DevBrokerUnavailable

        broker = DevBroker()
        try:
            settings = settings.model_copy(update={"kafka_bootstrap": broker.start()})
        except DevBrokerUnavailable as exc:
            print(f"vinr up: {exc}", file=sys.stderr)
            return 2
        print(
            f"dev Kafka broker at {settings.kafka_bootstrap} (in-memory, not durable)", flush=True
        )
    host = getattr(args, "host", None) or settings.api_host
    port = getattr(args, "port", None) or settings.api_port
    try:
        if command == "migrate":
            asyncio.run(_migrate(settings))
        elif command == "account" and args.account_command == "limits":
            return asyncio.run(_account_limits(settings, args))
        elif command == "account":
            asyncio.run(_create_account(settings, args.name))
        elif command == "api":
            asyncio.run(roles.run_api(settings, host, port))
        elif command == "up":
            print(f"vinr up: api on http://{host}:{port}", flush=True)
            asyncio.run(roles.run_up(settings, host, port))
        else:
            needs = {"aggregator": ("postgres", "kafka"), "dispatcher": ("postgres",)}.get(
                command, ("postgres", "redis", "kafka")
            )
            asyncio.run(roles.run_workers(settings, [_worker(command, settings, args)], needs))
    except KeyboardInterrupt:
        return 130
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"vinr {command}: {exc}", file=sys.stderr)
        return 1
    finally:
        if broker is not None:
            broker.stop()
    return 0


def _worker(command: str, settings: Settings, args: argparse.Namespace) -> Worker:
    if command == "aggregator":
        from aggregator.worker import Aggregator

        parts = [int(p) for p in args.partitions.split(",")] if args.partitions else None
        return Aggregator(settings, partitions=parts, group=args.group)
    if command == "invoicer":
        from invoicer.worker import Invoicer

        return Invoicer(settings)
    from dispatcher.worker import Dispatcher

    return Dispatcher(settings)


if __name__ == "__main__":
    sys.exit(main())
