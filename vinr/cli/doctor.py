"""``vinr doctor``: can vinr run here? Postgres, Redis, Kafka and the schema, checked the way
the roles reach them, one line each, and for each failure what to fix.

Each check has a short deadline, so an unreachable host costs seconds, not minutes; the
three services are checked at once. Nothing secret is printed: URLs are shown with their
passwords masked, and error texts pass the same redaction as log lines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from infra.db import admin_dsn, migration_files, migration_status, server_version
from infra.settings import Settings
from infra.telemetry import redact
from vinr.cli.output import interactive, printable

__all__ = ["MIN_POSTGRES", "MIN_REDIS", "Check", "add_commands", "run_checks", "version_at_least"]

MIN_POSTGRES = (15, 0)
MIN_REDIS = (7, 0)
TIMEOUT_S = 3.0


def add_commands(sub: Any) -> None:
    """Register ``doctor`` on ``vinr``'s subcommands."""
    doctor = sub.add_parser(
        "doctor",
        help="check Postgres, Redis, Kafka and the schema; say what to fix",
        description="Check what vinr needs, with the settings it would run with: Postgres"
        f" (reachable, version {MIN_POSTGRES[0]} or later), Redis (answers PING, version"
        f" {MIN_REDIS[0]} or later), Kafka (VINR_KAFKA_BOOTSTRAP reachable, or the dev"
        " broker able to start when it is unset) and the schema (every migration applied)."
        " One line per check, ✓ or ✗; under each failure, what to fix. Exit status 0 when"
        " every check passes, 1 otherwise. Passwords are never shown.",
        epilog="examples:\n  vinr doctor\n"
        "  vinr doctor && vinr up   # start only when everything answers",
    )
    doctor.set_defaults(handler=_doctor)


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: what was found and, when it failed, what to do about it."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def version_at_least(version: str, minimum: tuple[int, int]) -> bool:
    """Whether a dotted version (``7.0.15``, ``15.20 (Debian …)``) is ``minimum`` or later."""
    parts = []
    for piece in version.split()[0].split(".")[:2]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    while len(parts) < 2:
        parts.append(0)
    return (parts[0], parts[1]) >= minimum


def _local(host: str | None) -> bool:
    """A host on this machine: where the fix is a command to run here."""
    if host is None or host == "localhost" or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _text(exc: BaseException) -> str:
    """An error's first line, redacted and printable."""
    message = str(exc).strip()
    return printable(redact(message.splitlines()[0] if message else type(exc).__name__))


def _postgres_start() -> str:
    """The command that starts this machine's PostgreSQL, as ``make services`` runs it."""
    clusters = sorted(
        (p.name for p in Path("/etc/postgresql").glob("*") if p.name.isdigit()), key=int
    )
    if clusters and shutil.which("pg_ctlcluster"):
        return f"pg_ctlcluster --skip-systemctl-redirect {clusters[-1]} main start"
    return f"install PostgreSQL {MIN_POSTGRES[0]} or later and start it"


async def _postgres(settings: Settings) -> tuple[Check, Check]:
    """The Postgres check and the schema check (which needs Postgres)."""
    dsn = settings.database_url.get_secret_value()
    shown = redact(dsn)
    parts = urlsplit(dsn)
    missing_db: str | None = None
    conn: asyncpg.Connection[Any] | None = None
    try:
        try:
            conn = await asyncpg.connect(dsn, timeout=TIMEOUT_S)
        except asyncpg.InvalidCatalogNameError:
            split = admin_dsn(dsn)
            if split is None:
                raise
            missing_db = split[1]
            conn = await asyncpg.connect(split[0], timeout=TIMEOUT_S)
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as exc:
        return (
            Check(
                "Postgres",
                False,
                f"{shown} refused the login: {_text(exc)}",
                "check the user and password in VINR_DATABASE_URL",
            ),
            _unchecked(),
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if _local(parts.hostname):
            fix = (
                f"start PostgreSQL: {_postgres_start()}; or set VINR_DATABASE_URL to a"
                " server that runs"
            )
        else:
            fix = "check that the server in VINR_DATABASE_URL is up and reachable from here"
        return Check("Postgres", False, f"cannot connect to {shown}: {_text(exc)}", fix), (
            _unchecked()
        )
    try:
        number, version = await server_version(conn)
        if number < MIN_POSTGRES[0] * 10_000 + MIN_POSTGRES[1]:
            postgres = Check(
                "Postgres",
                False,
                f"PostgreSQL {version} at {shown}; vinr needs {MIN_POSTGRES[0]} or later",
                f"upgrade PostgreSQL to {MIN_POSTGRES[0]} or later",
            )
        else:
            postgres = Check("Postgres", True, f"PostgreSQL {version} at {shown}")
        if missing_db is not None:
            names = [name for _, name, _ in migration_files()]
            return postgres, Check(
                "schema",
                False,
                f"database '{missing_db}' does not exist; {len(names)} migration(s) pending",
                "vinr migrate (it creates the database, then applies them)",
            )
        return postgres, _schema(await migration_status(conn))
    finally:
        await conn.close()


def _unchecked() -> Check:
    return Check("schema", False, "not checked: Postgres cannot be reached", "see Postgres, above")


def _schema(status: Any) -> Check:
    if status.unknown:
        return Check(
            "schema",
            False,
            "the database has migrations this vinr does not know: " + ", ".join(status.unknown),
            "run a vinr at least as new as the one that migrated this database",
        )
    if status.pending:
        total = len(status.applied) + len(status.pending)
        return Check(
            "schema",
            False,
            f"{len(status.pending)} of {total} migration(s) pending: " + ", ".join(status.pending),
            "vinr migrate",
        )
    latest = status.applied[-1] if status.applied else "none"
    return Check(
        "schema", True, f"up to date: {len(status.applied)} migration(s), the latest {latest}"
    )


async def _redis(settings: Settings) -> Check:
    from redis.asyncio import Redis
    from redis.exceptions import AuthenticationError, RedisError, ResponseError

    url = settings.redis_url.get_secret_value()
    shown = redact(url)
    parts = urlsplit(url)
    client = Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
    try:
        await client.ping()
        info = await client.info("server")
    except (AuthenticationError, ResponseError) as exc:
        text = _text(exc)
        if isinstance(exc, AuthenticationError) or "auth" in text.lower():
            return Check(
                "Redis",
                False,
                f"{shown} refused: {text}",
                "check the user and password in VINR_REDIS_URL",
            )
        return Check("Redis", False, f"{shown} answered an error: {text}", "check VINR_REDIS_URL")
    except (RedisError, OSError, TimeoutError) as exc:
        if parts.scheme == "unix":
            fix = "start Redis with that unixsocket, or set VINR_REDIS_URL to a Redis that runs"
        elif _local(parts.hostname):
            start = (
                "redis-server --daemonize yes --bind 127.0.0.1"
                f' --port {parts.port or 6379} --save "" --appendonly no'
            )
            if not shutil.which("redis-server"):
                start = f"install Redis {MIN_REDIS[0]} or later, then {start}"
            fix = f"start Redis: {start}; or set VINR_REDIS_URL to a Redis that runs"
        else:
            fix = "check that the Redis in VINR_REDIS_URL is up and reachable from here"
        return Check("Redis", False, f"cannot connect to {shown}: {_text(exc)}", fix)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    version = str(info.get("redis_version", "?"))
    if not version_at_least(version, MIN_REDIS):
        return Check(
            "Redis",
            False,
            f"Redis {version} at {shown}; vinr needs {MIN_REDIS[0]} or later",
            f"upgrade Redis to {MIN_REDIS[0]} or later",
        )
    return Check("Redis", True, f"Redis {version} at {shown}")


async def _kafka(settings: Settings) -> Check:
    if not settings.kafka_bootstrap:
        return await _dev_broker()
    from aiokafka.client import AIOKafkaClient

    bootstrap = settings.kafka_bootstrap
    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(TIMEOUT_S * 1000),
        metadata_max_age_ms=60_000,
    )
    from aiokafka.errors import KafkaConnectionError

    kafka_log = logging.getLogger("aiokafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)  # its connection errors are this check's answer
    try:
        await asyncio.wait_for(client.bootstrap(), TIMEOUT_S)
        metadata = await asyncio.wait_for(client.fetch_all_metadata(), TIMEOUT_S)
    except Exception as exc:  # any failure to reach the cluster is this check's answer
        if isinstance(exc, KafkaConnectionError):
            why = "no broker answered"
        elif isinstance(exc, TimeoutError):
            why = f"no answer within {TIMEOUT_S:.0f} s"
        else:
            why = _text(exc)
        return Check(
            "Kafka",
            False,
            f"cannot reach VINR_KAFKA_BOOTSTRAP={bootstrap}: {why}",
            "start Kafka there, or set VINR_KAFKA_BOOTSTRAP to brokers that run; unset,"
            " `vinr up` starts the dev broker",
        )
    finally:
        with contextlib.suppress(Exception):
            await client.close()
        kafka_log.setLevel(level)
    brokers = len(metadata.brokers())
    topic = settings.usage_topic
    partitions = metadata.partitions_for_topic(topic)
    if partitions:
        where = f"topic {topic}: {len(partitions)} partition(s)"
    else:
        where = (
            f"topic {topic} not created yet (created on first use where the brokers"
            f" auto-create topics; otherwise: kafka-topics.sh --bootstrap-server {bootstrap}"
            f" --create --topic {topic} --partitions 12)"
        )
    return Check("Kafka", True, f"{brokers} broker(s) at {bootstrap}; {where}")


async def _dev_broker() -> Check:
    """VINR_KAFKA_BOOTSTRAP unset: can the dev broker that ``vinr up`` starts start here?"""
    from infra.devbroker import DevBroker, DevBrokerUnavailable

    quiet = logging.getLogger("infra.devbroker")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # its start-up warning is for `vinr up`, not for this check
    broker = DevBroker()
    try:
        await asyncio.to_thread(broker.start, TIMEOUT_S * 2)
    except DevBrokerUnavailable as exc:
        return Check(
            "Kafka",
            False,
            "VINR_KAFKA_BOOTSTRAP is unset and the dev broker cannot start here",
            f"{exc}",
        )
    except Exception as exc:  # the mock cluster failing to start is this check's answer
        return Check(
            "Kafka",
            False,
            f"VINR_KAFKA_BOOTSTRAP is unset and the dev broker did not start: {_text(exc)}",
            "set VINR_KAFKA_BOOTSTRAP to a Kafka",
        )
    finally:
        with contextlib.suppress(Exception):
            broker.stop()
        quiet.setLevel(level)
    return Check(
        "Kafka",
        True,
        "VINR_KAFKA_BOOTSTRAP unset: `vinr up` uses the dev broker (in-memory, not"
        " durable), which starts here; roles run alone need VINR_KAFKA_BOOTSTRAP",
    )


async def _bounded(name: str, check: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await asyncio.wait_for(check(), TIMEOUT_S * 4)
    except TimeoutError:
        return Check(name, False, f"no answer within {TIMEOUT_S * 4:.0f} s", "see its address")


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order printed: Postgres, Redis, Kafka, schema."""
    postgres, redis, kafka = await asyncio.gather(
        _bounded("Postgres", lambda: _postgres(settings)),
        _bounded("Redis", lambda: _redis(settings)),
        _bounded("Kafka", lambda: _kafka(settings)),
    )
    if isinstance(postgres, Check):
        postgres = (postgres, _unchecked())
    return [postgres[0], redis, kafka, postgres[1]]


def _doctor(settings: Settings, args: argparse.Namespace) -> int:
    checks = asyncio.run(run_checks(settings))
    _report(checks)
    return 0 if all(c.ok for c in checks) else 1


def _report(checks: list[Check]) -> None:
    width = max(len(c.name) for c in checks)
    failed = sum(not c.ok for c in checks)
    summary = (
        f"all {len(checks)} checks passed"
        if not failed
        else f"{failed} of {len(checks)} checks failed"
    )
    if not interactive():
        for c in checks:
            print(f"{'✓' if c.ok else '✗'} {c.name.ljust(width)}  {c.detail}")
            if c.fix:
                print(f"  {' ' * width}  fix: {c.fix}")
        print(summary)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(highlight=False)
    for c in checks:
        line = Text()
        line.append("✓ " if c.ok else "✗ ", style="bold green" if c.ok else "bold red")
        line.append(c.name.ljust(width), style="bold")
        line.append(f"  {c.detail}")
        console.print(line)
        if c.fix:
            fix = Text(f"  {' ' * width}  fix: ", style="yellow")
            fix.append(c.fix)
            console.print(fix)
    console.print(Text(summary, style="green" if not failed else "red"))
