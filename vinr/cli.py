"""The ``vinr`` command: one entry point per role, plus set-up and dev helpers.

vinr migrate                 apply the schema (idempotent)
vinr account create NAME     new account; prints its sandbox key on the last line
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
import sys
import threading
from collections.abc import Sequence

import asyncpg
from pydantic import ValidationError

from infra.settings import Settings
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
        print(f"vinr: invalid configuration: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_json)
    command = args.command
    if command == "devbroker":
        return _devbroker()
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
