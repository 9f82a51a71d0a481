"""An in-process uvicorn server on a free local port, for tests that need a live HTTP
endpoint: the API under test, or a webhook receiver; and the API on a thread of its own."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import uvicorn

from infra.devenv import free_port
from infra.settings import Settings

__all__ = ["LiveServer", "ThreadedApi"]

T = TypeVar("T")


class LiveServer:
    def __init__(self, app: Any, port: int) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            loop="none",
            lifespan="on",
            access_log=False,
            log_config=None,
        )
        self.server = uvicorn.Server(config)
        self.url = f"http://127.0.0.1:{port}"
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LiveServer:
        self.server.config.setup_event_loop = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await self._task


class ThreadedApi:
    """An API instance serving on an event loop of its own, in a thread: for synchronous
    clients (hypothesis-driven requests, schemathesis) that would otherwise block the loop
    the server runs on. ``run`` runs a coroutine on that loop (set-up, read-backs)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: LiveServer | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=60)

    def __enter__(self) -> str:
        from vinr.api import create_app

        self._thread.start()
        self._server = LiveServer(create_app(self.settings), free_port())
        self.run(self._server.__aenter__())
        return self._server.url

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self.run(self._server.__aexit__(None, None, None))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
