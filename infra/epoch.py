"""Polling a one-row epoch counter: the way a process learns that cached state changed.

A writer bumps a counter in the transaction of every change some process caches; each
process reads it every ``poll_s`` and drops its cache when it moved (also on the first
read: what was cached before it may predate a change). ``EpochWatch`` is that loop, with
the time of its latest successful read, so a cache can also refuse to be trusted when the
epoch could not be read for a while (Postgres away).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

__all__ = ["EpochWatch"]

log = logging.getLogger(__name__)


class EpochWatch:
    """``read`` the epoch every ``poll_s``; ``on_moved`` when it changed. Polls start at a
    fixed rate (a slow read does not push the next one back); one read may take at most
    ``timeout_s``."""

    def __init__(
        self,
        read: Callable[[], Awaitable[int]],
        on_moved: Callable[[], None],
        *,
        poll_s: float,
        timeout_s: float,
        what: str,
    ) -> None:
        self._read = read
        self._on_moved = on_moved
        self._poll_s = poll_s
        self._timeout_s = timeout_s
        self._what = what
        self.epoch: int | None = None
        # When the latest successful read began (monotonic); -inf before the first one.
        self.read_at = float("-inf")

    async def poll(self) -> bool:
        """Read the epoch once; ``on_moved`` when it moved. True when it did."""
        began = time.monotonic()
        async with asyncio.timeout(self._timeout_s):
            epoch = await self._read()
        moved = epoch != self.epoch
        if moved:
            self._on_moved()
            self.epoch = epoch
        self.read_at = began
        return moved

    async def run(self) -> None:
        """Poll until cancelled. Failures are logged once and retried every ``poll_s``."""
        failing = False
        while True:
            began = time.monotonic()
            try:
                await self.poll()
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if not failing:
                    log.warning(
                        "cannot read the %s (%s: %s); retrying every %.2f s",
                        self._what,
                        type(exc).__name__,
                        exc,
                        self._poll_s,
                    )
                    failing = True
            except Exception:  # the watch must outlive a bug: what caches it depends on it
                log.exception("reading the %s failed; retrying", self._what)
                failing = True
            else:
                if failing:
                    log.info("%s readable again", self._what)
                    failing = False
            await asyncio.sleep(max(0.0, began + self._poll_s - time.monotonic()))
