"""Coalescing: the calls made during one event-loop iteration go out as one batch call.

Used where a per-call round trip costs more than the work: the usage hot path's Redis
claims and settlements (``domain.idempotency``) and its single-record Kafka publishes
(``ingest.publisher``). Batches grow by themselves under load, since items queue while at
most ``max_concurrent`` earlier calls are still running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["Coalescer"]

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Runs the items submitted during one event-loop iteration as one batch call.

    At most ``max_concurrent`` batch calls run at once; items submitted meanwhile wait and
    go out together in the next call. A failed call fails every item in it; items queued
    with ``push`` (no future, nobody waits for them) are reported to ``on_push_error``,
    once per failed call.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int,
        max_concurrent: int,
        on_push_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._on_push_error = on_push_error
        self._queue: list[tuple[T, asyncio.Future[R] | None]] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, looked up once: ``asyncio.get_running_loop`` makes a ``getpid``
        system call on CPython 3.11, and the hot path queues two items per request."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` for the next batch call; its future has the item's result."""
        loop = self._running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if not self._scheduled and self._running < self._max_concurrent:
            self._scheduled = True
            loop.call_soon(self._kick)
        return future

    def push(self, item: T) -> None:
        """Queue ``item`` like ``enqueue``, for a caller that does not wait for its result
        (no future per item: the hot path's settlements)."""
        self._queue.append((item, None))
        if not self._scheduled and self._running < self._max_concurrent:
            self._scheduled = True
            self._running_loop().call_soon(self._kick)

    async def drain(self) -> None:
        """Until the queue is empty and no batch call is running."""
        while self._queue or self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._queue and not self._tasks:
                await asyncio.sleep(0)

    def _kick(self) -> None:
        self._scheduled = False
        while self._queue and self._running < self._max_concurrent:
            batch, self._queue = (self._queue[: self._max_batch], self._queue[self._max_batch :])
            self._running += 1
            task = self._running_loop().create_task(self._call(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        # An item whose caller gave up while it waited (a timeout) is not run at all.
        batch = [entry for entry in batch if entry[1] is None or not entry[1].done()]
        try:
            results = await self._run([item for item, _ in batch]) if batch else []
        except asyncio.CancelledError:
            for _, future in batch:
                if future is not None:
                    future.cancel()
            raise
        except Exception as exc:
            pushed = False
            for _, future in batch:
                if future is None:
                    pushed = True
                elif not future.done():
                    future.set_exception(exc)
            if pushed and self._on_push_error is not None:
                self._on_push_error(exc)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if future is not None and not future.done():
                    future.set_result(result)
        finally:
            self._running -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                self._running_loop().call_soon(self._kick)
