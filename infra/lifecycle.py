"""The start/stop lifecycle every worker role shares (arq's shape).

``Service`` gives ``async with``, ``request_stop`` and an idle wait that wakes on stop;
``PollingService`` adds the poll loop of the invoicer and the dispatcher: ``tick()`` until
nothing is due, then wait ``poll_s`` — transient database/network errors are logged and
retried rather than ending the role.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from typing import Any, Self

import asyncpg

__all__ = ["PollingService", "Service"]

log = logging.getLogger(__name__)

TRANSIENT = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


class Service(ABC):
    def __init__(self) -> None:
        self._stopping = asyncio.Event()

    @abstractmethod
    async def start(self) -> None:
        """Open this role's connections."""

    @abstractmethod
    async def stop(self) -> None:
        """Close what ``start`` opened; idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def request_stop(self) -> None:
        """Stop taking work; ``run`` returns once the step in hand is finished."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    async def idle(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a stop is requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)


class PollingService(Service):
    poll_s: float = 1.0
    name: str = "worker"

    @abstractmethod
    async def tick(self) -> int:
        """One pass over what is due; the number of steps taken."""

    async def run(self) -> None:
        while not self.stopping:
            try:
                worked = await self.tick()
            except TRANSIENT as exc:
                log.error("%s tick failed: %s; retrying", self.name, exc)
                worked = 0
            if not worked:
                await self.idle(self.poll_s)
