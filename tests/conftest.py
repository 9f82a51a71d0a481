"""Real services for the suite: Postgres, Redis and a Kafka-protocol broker.

Each run gets its own database, Redis key prefix and topic, so runs never see each other's
data. The services are the machine's own (with ``VINR_KAFKA_BOOTSTRAP`` unset, a dev broker,
``vinr devbroker``, is started for the session), or containers with
``VINR_TESTCONTAINERS=1`` (see ``tests/support/containers.py``); the session's header says
which. Roles run in-process: the API on a free port; the aggregator, invoicer and
dispatcher are stepped by the tests (``drain()``/``tick()``), arq's "burst" style.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from aggregator.worker import Aggregator
from dispatcher.worker import Dispatcher
from domain.accounts import create_account
from infra.devenv import dev_broker, free_port, isolated_settings
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support import containers
from tests.support.server import LiveServer
from vinr.api import create_app

# Timings that keep tests quick; everything else is the production default. The settle time
# still outlasts the publish deadline, as the settings require.
TEST_OVERRIDES: dict[str, Any] = {
    "publish_timeout_s": 1.0,
    "watermark_timeout_s": 15.0,
    "invoicer_poll_s": 0.2,
    "dispatcher_poll_s": 0.1,
    "aggregator_poll_ms": 50,
    "close_settle_s": 1.6,
}


_containers = ExitStack()
_path: containers.ServicePath | None = None


_real_getaddrinfo = socket.getaddrinfo


def _loopback_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    """Tests never resolve a name through DNS (the resolver is an address off this machine,
    and a webhook endpoint named ``example.com`` must never be reached): numeric addresses
    and ``localhost`` resolve as usual, any other name fails like an unknown host."""
    name = host.decode() if isinstance(host, bytes) else host
    if name is None or name == "localhost" or _is_numeric(name):
        return _real_getaddrinfo(host, *args, **kwargs)
    raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no host names ({name!r})")


def _is_numeric(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def pytest_configure(config: pytest.Config) -> None:
    global _path
    socket.getaddrinfo = _loopback_only_getaddrinfo
    _path = containers.choose_path(os.environ, containers.docker_engine_answers)
    if _path.containers:
        containers.apply(containers.start_containers(_containers))


def pytest_unconfigure(config: pytest.Config) -> None:
    socket.getaddrinfo = _real_getaddrinfo
    _containers.close()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say which services this run tests against, even under ``-q``."""
    kafka = os.environ.get("VINR_KAFKA_BOOTSTRAP") or "the dev broker"
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"vinr services: {_path.reason if _path else '?'}; Kafka: {kafka}")


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    with dev_broker() as address:
        yield address


@pytest.fixture(scope="session")
async def settings(broker: str) -> AsyncIterator[Settings]:
    async with isolated_settings(broker, label="test", **TEST_OVERRIDES) as s:
        yield s


@pytest.fixture(scope="session")
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    from infra.db import create_pool

    p = await create_pool(settings, min_size=1, max_size=8)
    yield p
    await p.close()


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    """A client of the test Redis (the tests' keys are under the run's prefix)."""
    r = Redis.from_url(settings.redis_url.get_secret_value())
    yield r
    await r.aclose()


@pytest.fixture(scope="session")
async def api(settings: Settings) -> AsyncIterator[str]:
    async with LiveServer(create_app(settings), free_port()) as server:
        yield server.url


@pytest.fixture(scope="session")
async def aggregator(settings: Settings) -> AsyncIterator[Aggregator]:
    async with Aggregator(settings) as agg:
        yield agg


@pytest.fixture(scope="session")
async def invoicer(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Invoicer]:
    async with Invoicer(settings, pool=pool) as inv:
        yield inv


@pytest.fixture(scope="session")
async def dispatcher(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Dispatcher]:
    async with Dispatcher(settings, pool=pool) as d:
        yield d


@pytest.fixture
async def secret_key(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        _, test_key, _ = await create_account(conn, f"test-{uuid.uuid4().hex[:6]}")
    return test_key


@pytest.fixture
async def client(api: str, secret_key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=api, timeout=30, headers={"Authorization": f"Bearer {secret_key}"}
    ) as c:
        yield c
