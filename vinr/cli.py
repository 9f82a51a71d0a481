"""The ``vinr`` command: one entry point per role, plus set-up and dev helpers.

vinr migrate                 apply the schema (idempotent)
vinr account create NAME     new account; prints its sandbox key on the last line
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
