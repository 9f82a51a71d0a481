"""``vinr doctor`` against real services: each dependency reachable, then each one made
unreachable (its URL pointed at a closed loopback port: the shared services keep running),
a Redis server of the test's own stopped and started again with the fix doctor prints, a
database that was never migrated, and a database that does not exist yet."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra import devenv
from infra.db import migration_files
from infra.devenv import free_port, postgres_root
from infra.kafka import create_producer, partitions
from infra.settings import Settings
from infra.telemetry import redact
from tests.support.credentials import password_env, with_userinfo
from vinr.cli.doctor import MIN_POSTGRES, MIN_REDIS, version_at_least

NAMES = ("Postgres", "Redis", "Kafka", "schema")


def _doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vinr.cli", "doctor"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def doctor(settings: Settings, **extra: str) -> subprocess.CompletedProcess[str]:
    env = devenv.role_env(settings, VINR_LOG_LEVEL="WARNING", **extra)
    return await asyncio.to_thread(_doctor, env)


def checks(done: subprocess.CompletedProcess[str]) -> dict[str, tuple[bool, str, str | None]]:
    """name → (passed, detail, fix) from the output: one line per check, in order, each
    failure followed by its ``fix:`` line, then the summary."""
    assert "\x1b" not in done.stdout
    assert "Traceback" not in done.stderr
    found: dict[str, tuple[bool, str, str | None]] = {}
    last = ""
    for line in done.stdout.splitlines()[:-1]:
        if line.startswith(("✓ ", "✗ ")):
            name, detail = line[2:].split(None, 1)
            found[name] = (line[0] == "✓", detail, None)
            last = name
        else:
            assert line.strip().startswith("fix: "), line
            ok, detail, _ = found[last]
            assert not ok, f"a passing check has a fix: {line}"
            found[last] = (ok, detail, line.strip().removeprefix("fix: "))
    assert list(found) == list(NAMES)
    for ok, _, fix in found.values():
        assert ok or fix, "every failure says what to fix"
    failed = sum(not ok for ok, _, _ in found.values())
    summary = done.stdout.splitlines()[-1]
    assert summary == ("all 4 checks passed" if not failed else f"{failed} of 4 checks failed")
    assert done.returncode == (0 if not failed else 1), done.stderr
    return found


@pytest.fixture
async def topic(settings: Settings) -> None:
    """The usage topic exists, as once the API has published to it."""
    producer = await create_producer(settings)
    try:
        assert await partitions(producer, settings.usage_topic)
    finally:
        await producer.stop()


async def test_everything_answers(settings: Settings, topic: None) -> None:
    done = await doctor(settings)
    found = checks(done)
    assert all(ok for ok, _, _ in found.values()), done.stdout
    assert found["Postgres"][1].startswith("PostgreSQL ")
    assert redact(settings.database_url.get_secret_value()) in found["Postgres"][1]
    assert version_at_least(found["Postgres"][1].split()[1], MIN_POSTGRES)
    redis, version, at = found["Redis"][1].split()[:3]
    assert (redis, at) == ("Redis", "at") and version_at_least(version, MIN_REDIS)
    assert found["Kafka"][1].startswith(f"1 broker(s) at {settings.kafka_bootstrap}; topic")
    assert f"topic {settings.usage_topic}: " in found["Kafka"][1]
    latest = migration_files()[-1][1]
    assert found["schema"][1] == (
        f"up to date: {len(migration_files())} migration(s), the latest {latest}"
    )


async def test_redis_unreachable(settings: Settings, topic: None) -> None:
    port = free_port()  # bound and released: nothing listens there
    done = await doctor(settings, VINR_REDIS_URL=f"redis://:s3cret-redis@127.0.0.1:{port}/0")
    found = checks(done)
    ok, detail, fix = found["Redis"]
    assert not ok
    assert detail.startswith(f"cannot connect to redis://:[REDACTED]@127.0.0.1:{port}/0: ")
    assert fix is not None and fix.startswith(
        f'start Redis: redis-server --daemonize yes --bind 127.0.0.1 --port {port} --save ""'
    )
    assert "VINR_REDIS_URL" in fix
    assert [name for name, (ok, _, _) in found.items() if not ok] == ["Redis"]
    assert "s3cret-redis" not in done.stdout + done.stderr


def test_a_redis_that_stops_and_is_started_again_by_the_fix(
    settings: Settings, topic: None
) -> None:
    """A Redis server of this test's own (the shared one keeps serving the suite): doctor
    passes while it runs, fails once it is shut down, and the command it prints as the fix
    brings it back."""
    port = free_port()
    env = devenv.role_env(
        settings, VINR_LOG_LEVEL="WARNING", VINR_REDIS_URL=f"redis://127.0.0.1:{port}/0"
    )
    cli = ["redis-cli", "-p", str(port)]
    server = subprocess.Popen(
        ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if subprocess.run([*cli, "ping"], capture_output=True).stdout.strip() == b"PONG":
                break
            time.sleep(0.05)
        assert checks(_doctor(env))["Redis"][0]
        subprocess.run([*cli, "shutdown", "nosave"], capture_output=True)
        server.wait(timeout=10)
        ok, _, fix = checks(_doctor(env))["Redis"]
        assert not ok and fix is not None
        command = fix.removeprefix("start Redis: ").split(";")[0]
        assert command.startswith("redis-server --daemonize yes"), fix
        subprocess.run(command, shell=True, check=True, timeout=30)
        assert checks(_doctor(env))["Redis"][0]
    finally:
        subprocess.run([*cli, "shutdown", "nosave"], capture_output=True)
        if server.poll() is None:
            server.kill()


async def test_postgres_unreachable(settings: Settings, topic: None) -> None:
    port = free_port()
    done = await doctor(
        settings, VINR_DATABASE_URL=f"postgresql://root:s3cret-pg@127.0.0.1:{port}/vinr"
    )
    found = checks(done)
    ok, detail, fix = found["Postgres"]
    assert not ok
    assert detail.startswith(
        f"cannot connect to postgresql://root:[REDACTED]@127.0.0.1:{port}/vinr"
    )
    assert fix is not None and "VINR_DATABASE_URL" in fix and fix.startswith("start PostgreSQL: ")
    assert "pg_ctlcluster --skip-systemctl-redirect" in fix or "install PostgreSQL" in fix
    assert found["schema"] == (
        False,
        "not checked: Postgres cannot be reached",
        "see Postgres, above",
    )
    assert found["Redis"][0] and found["Kafka"][0]
    assert "s3cret-pg" not in done.stdout + done.stderr


async def test_kafka_unreachable_and_unset(settings: Settings) -> None:
    port = free_port()
    done = await doctor(settings, VINR_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    found = checks(done)
    assert found["Kafka"][:2] == (
        False,
        f"cannot reach VINR_KAFKA_BOOTSTRAP=127.0.0.1:{port}: no broker answered",
    )
    assert [name for name, (ok, _, _) in found.items() if not ok] == ["Kafka"]
    # Unset: the dev broker `vinr up` would start is started here, and it answers.
    unset = checks(await doctor(settings, VINR_KAFKA_BOOTSTRAP=""))
    assert unset["Kafka"][0]
    assert unset["Kafka"][1].startswith("VINR_KAFKA_BOOTSTRAP unset: `vinr up` uses the dev broker")


@pytest.fixture
async def database_name() -> AsyncIterator[str]:
    """A database name of this test's own, dropped afterwards if it was created."""
    name = f"vinr_doctor_{uuid.uuid4().hex[:8]}"
    yield name
    admin = await asyncpg.connect(f"{postgres_root()}/postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_pending_migrations_and_then_migrate(
    settings: Settings, topic: None, database_name: str
) -> None:
    """A fresh database without the schema: every migration is named as pending, and
    ``vinr migrate`` is the fix; after it, every check passes."""
    dsn = f"{postgres_root()}/{database_name}"
    admin = await asyncpg.connect(f"{postgres_root()}/postgres")
    try:
        await admin.execute(f'CREATE DATABASE "{database_name}"')
    finally:
        await admin.close()
    names = [name for _, name, _ in migration_files()]
    found = checks(await doctor(settings, VINR_DATABASE_URL=dsn))
    assert found["Postgres"][0]
    assert found["schema"] == (
        False,
        f"{len(names)} of {len(names)} migration(s) pending: {', '.join(names)}",
        "vinr migrate",
    )
    # Apply all but the newest by hand: the newest alone is pending.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version, name, sql in migration_files()[:-1]:
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
            )
    finally:
        await conn.close()
    found = checks(await doctor(settings, VINR_DATABASE_URL=dsn))
    assert found["schema"][:2] == (
        False,
        f"1 of {len(names)} migration(s) pending: {names[-1]}",
    )
    env = devenv.role_env(settings, VINR_DATABASE_URL=dsn, VINR_LOG_LEVEL="WARNING")
    migrated = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "vinr.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"migrations applied: {names[-1]}"
    found = checks(await doctor(settings, VINR_DATABASE_URL=dsn))
    assert all(ok for ok, _, _ in found.values())


async def test_a_database_not_created_yet(
    settings: Settings, topic: None, database_name: str
) -> None:
    dsn = f"{postgres_root()}/{database_name}"
    found = checks(await doctor(settings, VINR_DATABASE_URL=dsn))
    assert found["Postgres"][0]
    assert found["schema"] == (
        False,
        f"database '{database_name}' does not exist; {len(migration_files())} migration(s) pending",
        "vinr migrate (it creates the database, then applies them)",
    )


async def test_a_database_migrated_by_a_newer_vinr(
    settings: Settings, topic: None, database_name: str
) -> None:
    dsn = f"{postgres_root()}/{database_name}"
    env = devenv.role_env(settings, VINR_DATABASE_URL=dsn, VINR_LOG_LEVEL="WARNING")
    migrated = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "vinr.cli", "migrate"], env=env, capture_output=True
    )
    assert migrated.returncode == 0
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (999, '999_from_the_future.sql')"
        )
    finally:
        await conn.close()
    found = checks(await doctor(settings, VINR_DATABASE_URL=dsn))
    assert found["schema"] == (
        False,
        "the database has migrations this vinr does not know: 999_from_the_future.sql",
        "run a vinr at least as new as the one that migrated this database",
    )


@pytest.mark.parametrize(
    ("version", "minimum", "enough"),
    [
        ("7.0.15", MIN_REDIS, True),
        ("6.2.14", MIN_REDIS, False),
        ("7", MIN_REDIS, True),
        ("15.20 (Debian 15.20-0+deb12u1)", MIN_POSTGRES, True),
        ("14.11", MIN_POSTGRES, False),
        ("16beta2", MIN_POSTGRES, True),
        ("9.6.24", MIN_POSTGRES, False),
    ],
)
def test_version_rule(version: str, minimum: tuple[int, int], enough: bool) -> None:
    assert version_at_least(version, minimum) is enough


async def test_passwords_are_never_shown(broker: str) -> None:
    """A Postgres role and a Redis user that really carry passwords: the URLs are shown
    masked, and a Redis that refuses a wrong password says which setting to fix."""
    async with password_env(broker, label="doctor") as creds:
        settings = creds.settings
        done = await doctor(settings)
        found = checks(done)
        assert found["Postgres"][0] and found["Redis"][0]
        assert "[REDACTED]@" in found["Postgres"][1] and "[REDACTED]@" in found["Redis"][1]
        assert found["schema"][2] == "vinr migrate"  # never migrated
        wrong = with_userinfo(settings.redis_url.get_secret_value(), creds.redis_user, "nope42x")
        refused = await doctor(settings, VINR_REDIS_URL=wrong)
        redis = checks(refused)["Redis"]
        assert not redis[0] and redis[2] == "check the user and password in VINR_REDIS_URL"
        assert redis[1].startswith(f"redis://{creds.redis_user}:[REDACTED]@")
        for output in (done, refused):
            text = output.stdout + output.stderr
            for secret in (creds.postgres_password, creds.redis_password, "nope42x"):
                assert secret not in text
