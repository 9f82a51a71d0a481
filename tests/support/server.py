"""An in-process uvicorn server on a free local port, for tests that need a live HTTP
endpoint: the API under test, or a webhook receiver."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn

__all__ = ["LiveServer"]


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
