"""Running roles as processes: signal handling, graceful drain, and ``vinr up``.

Only this module installs signal handlers. On SIGTERM/SIGINT a role stops taking work,
finishes what it holds (the API drains in-flight requests and flushes the producer; the
aggregator commits its batch), and exits within ``_DRAIN_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Coroutine, Generator, Sequence
from typing import Any, Protocol

import asyncpg
import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from infra.db import apply_migrations
from infra.health import DependencyProbe
from infra.settings import Settings

__all__ = ["GC_THRESHOLDS", "Worker", "run_api", "run_up", "run_workers", "tune_gc"]

log = logging.getLogger(__name__)

_DRAIN_S = 25.0
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Run the cyclic garbage collector rarely, in the API and aggregator processes.

    Both allocate many short-lived containers per unit of work (a request's coroutines,
    futures and dicts; a message's decoded lists). With CPython's default threshold (700
    allocations) the collector runs every few requests or messages and rescans the live
    heap: it cost the aggregator's batch preparation ~2.5× and the API ~4% of its
    throughput in their benchmarks. Reference counting frees that garbage anyway; cycles
    are still collected, every 50,000 allocations. Start-up objects are frozen out of the
    scans. Process-wide, so the role entry points call it (tests embed the classes).
    """
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Worker(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def run(self) -> None: ...
    def request_stop(self) -> None: ...


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: the role runner owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _uvicorn(app: Any, host: str, port: int) -> _Server:
    # No proxy-headers middleware (a layer of ASGI per request, and no role reads the
    # client address) and no ``server`` header; the ``date`` header stays (RFC 9110).
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="none",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(_DRAIN_S),
        backlog=4096,
        proxy_headers=False,
        server_header=False,
    )
    return _Server(config)


def _on_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback)


def _health_app(probe: DependencyProbe) -> Any:
    """/healthz (alive), /readyz (dependencies answer) and /metrics for worker roles."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        ctype = "application/json"
        if path == "/metrics":
            status, body, ctype = 200, generate_latest(), CONTENT_TYPE_LATEST
        elif path == "/healthz":
            status, body = 200, b'{"status":"ok"}'
        elif path == "/readyz":
            checks = await probe.check()
            ready = all(v == "ok" for v in checks.values())
            status = 200 if ready else 503
            body = orjson.dumps({"status": "ready" if ready else "unavailable", "checks": checks})
        else:
            status, body = 404, b'{"error":{"type":"invalid_request_error","message":"not found"}}'
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


async def _migrate(settings: Settings) -> None:
    conn = await asyncpg.connect(settings.database_url.get_secret_value())
    try:
        await apply_migrations(conn)
    finally:
        await conn.close()


def _log_settings(settings: Settings) -> None:
    # The repr masks the secret settings (DSNs): safe to log, and what an operator checks.
    log.debug("settings: %r", settings)


async def run_api(settings: Settings, host: str, port: int) -> None:
    from vinr.api import create_app

    _log_settings(settings)

    server = _uvicorn(create_app(settings), host, port)

    def stop() -> None:
        server.should_exit = True

    _on_signals(stop)
    await server.serve()


async def run_workers(
    settings: Settings,
    workers: Sequence[Worker],
    needs: tuple[str, ...] = ("postgres", "redis", "kafka"),
    extra: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
) -> None:
    """Start workers (and optional extra servers), run until a signal, then drain."""
    _log_settings(settings)
    stopping = asyncio.Event()
    _on_signals(stopping.set)
    probe = DependencyProbe(settings, needs)
    health = (
        _uvicorn(_health_app(probe), "0.0.0.0", settings.metrics_port)
        if settings.metrics_port
        else None
    )
    started: list[Worker] = []
    try:
        for worker in workers:
            await worker.start()
            started.append(worker)
        tasks = [asyncio.create_task(w.run()) for w in started]
        tasks += [asyncio.create_task(fn()) for fn in extra]
        if health is not None:
            tasks.append(asyncio.create_task(health.serve()))
        waiter = asyncio.create_task(stopping.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not waiter and task.exception() is not None:
                log.error("a role failed: %r; stopping", task.exception())
        for worker in started:
            worker.request_stop()
        if health is not None:
            health.should_exit = True
        _, pending = await asyncio.wait(tasks, timeout=_DRAIN_S)
        for task in pending:
            task.cancel()
        waiter.cancel()
    finally:
        for worker in reversed(started):
            await worker.stop()
        await probe.stop()


async def run_up(settings: Settings, host: str, port: int) -> None:
    """api + aggregator + invoicer + dispatcher in one process, for development."""
    from aggregator.worker import Aggregator
    from dispatcher.worker import Dispatcher
    from invoicer.worker import Invoicer
    from vinr.api import create_app

    await _migrate(settings)
    server = _uvicorn(create_app(settings), host, port)

    class _Api:
        async def start(self) -> None:
            return None

        async def stop(self) -> None:
            return None

        async def run(self) -> None:
            await server.serve()

        def request_stop(self) -> None:
            server.should_exit = True

    workers: list[Worker] = [_Api(), Aggregator(settings), Invoicer(settings), Dispatcher(settings)]
    await run_workers(settings, workers)
