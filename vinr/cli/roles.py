"""``vinr api``, ``vinr up``, ``vinr aggregator``, ``vinr invoicer``, ``vinr dispatcher`` and
``vinr devbroker``: each role as a process (run by ``vinr.roles``)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
from typing import Any

import asyncpg

from infra.settings import Settings
from vinr.roles import Worker

__all__ = ["add_commands"]

_SIGTERM = (
    "On SIGTERM it stops taking work, finishes what it holds and exits 0. It answers"
    " /healthz and /readyz (200 only while its dependencies answer) and serves /metrics on"
    " VINR_METRICS_PORT when that is set."
)


def add_commands(sub: Any) -> None:
    """Register the role commands on ``vinr``'s subcommands."""
    for name, text, description, example in (
        (
            "api",
            "serve the HTTP API (ingest + control plane)",
            "Serve the HTTP API: usage ingestion (POST /v1/usage_records[/batch]) and the"
            " control plane (everything else; OpenAPI at /openapi.json). Run several behind"
            " a load balancer. Needs Postgres, Redis and VINR_KAFKA_BOOTSTRAP. On SIGTERM it"
            " drains in-flight requests and flushes the Kafka producer.",
            "vinr api --host 0.0.0.0 --port 8080",
        ),
        (
            "up",
            "run every role in one process (development)",
            "Run the API, the aggregator, the invoicer and the dispatcher in one process,"
            " after applying the migrations. Without VINR_KAFKA_BOOTSTRAP it starts the dev"
            " broker (in-memory, not durable). For development, never production.",
            "vinr up --port 8080",
        ),
    ):
        role = sub.add_parser(name, help=text, description=description, epilog=_example(example))
        role.add_argument(
            "--host", default=None, help="the address to listen on (default: VINR_API_HOST)"
        )
        role.add_argument(
            "--port", type=int, default=None, help="the port to listen on (default: VINR_API_PORT)"
        )
        role.set_defaults(handler=_role)
    agg = sub.add_parser(
        "aggregator",
        help="fold usage from Kafka into Postgres windows",
        description="Consume the usage topic and fold each request's records exactly once"
        " into per-period usage windows in Postgres (ledger, windows and offsets in one"
        " transaction). Several may run: give each its own --partitions, or share them"
        " with --group. " + _SIGTERM,
        epilog="examples:\n  vinr aggregator                    # every partition\n"
        "  vinr aggregator --partitions 0,1,2 # these only\n"
        "  vinr aggregator --group            # a share, rebalanced as members come and go",
    )
    agg.add_argument(
        "--partitions",
        default=None,
        metavar="LIST",
        help="comma-separated partitions to own (default: all)",
    )
    agg.add_argument(
        "--group",
        action="store_true",
        help="share partitions with the other members of VINR_CONSUMER_GROUP (Kafka's"
        " consumer groups); every assignment starts at the offsets stored in Postgres",
    )
    agg.set_defaults(handler=_role)
    for name, text, description in (
        (
            "invoicer",
            "close periods, invoice, charge, dun",
            "Close billing periods into draft invoices, finalize them once the aggregator"
            " has every record of the period, charge them and retry failed payments on the"
            " dunning schedule. Several may run. " + _SIGTERM,
        ),
        (
            "dispatcher",
            "deliver webhooks",
            "Deliver events to webhook endpoints, signed, retried with backoff for up to"
            " three days. Several may run. " + _SIGTERM,
        ),
    ):
        sub.add_parser(name, help=text, description=description).set_defaults(handler=_role)
    sub.add_parser(
        "devbroker",
        help="run the in-memory dev Kafka broker (not durable)",
        description="Run librdkafka's in-memory mock cluster and print its bootstrap"
        " address on the first line; stop with Ctrl-C. Not durable: for development and"
        " tests only. Needs the devbroker extra (pip install 'vinr[devbroker]'). It cannot"
        " rebalance a consumer group of two: the group tests run on tansu, a broker"
        " process from the dev extra (docs/adr/0011-tansu-for-consumer-groups.md).",
        epilog="example:\n  export VINR_KAFKA_BOOTSTRAP=$(vinr devbroker | head -n 1) &",
    ).set_defaults(handler=_devbroker)


def _example(command: str) -> str:
    return f"example:\n  {command}"


def _devbroker(settings: Settings, args: argparse.Namespace) -> int:
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


def _role(settings: Settings, args: argparse.Namespace) -> int:
    command = args.command
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
        if command == "api":
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
