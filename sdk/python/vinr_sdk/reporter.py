"""``UsageReporter``: buffered, batched usage reporting for producer services.

    async with UsageReporter(client) as reporter:
        await reporter.report("si_4Kp1", 1)

Records are buffered per subscription item and sent as ``POST /v1/usage_records/batch``
(≤ ``max_batch`` records, one item per batch) when an item's buffer fills, every
``flush_interval_s``, on ``flush()`` and on close. The timestamp is taken when ``report`` is
called, so a record lands in the period it happened in, not the one it was sent in.

Delivery: a batch is sealed once — fixed records, fixed ``Idempotency-Key`` — and every
retry sends exactly that, so the API replays rather than double counts. A retryable failure
(no answer, 409, 429, 5xx — after the client's own retries) keeps the batch, and the
batches after it for the same item, for the next flush. A non-retryable 4xx hands the batch
to ``on_error`` and counts it in ``failed_records``. Batches still undelivered when the
reporter closes go to ``on_error`` too: nothing is dropped silently.

Memory is bounded: while ``max_buffered`` records wait, ``report`` waits (backpressure).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ._client import AsyncVinr
from ._errors import APIConnectionError, VinrError
from .types import Action, UsageRecordParams

__all__ = ["MAX_BATCH_RECORDS", "ErrorHandler", "UsageBatch", "UsageReporter"]

log = logging.getLogger(__name__)

MAX_BATCH_RECORDS = 1000
MAX_QUANTITY = 2**53
ACTIONS = frozenset({"increment", "set"})


@dataclass(frozen=True, slots=True)
class UsageBatch:
    """One sealed batch: what is sent, and under which key, on every attempt."""

    subscription_item: str
    records: tuple[UsageRecordParams, ...]
    idempotency_key: str

    def __len__(self) -> int:
        return len(self.records)


ErrorHandler = Callable[[UsageBatch, VinrError], Awaitable[None] | None]


def log_failed_batch(batch: UsageBatch, exc: VinrError) -> None:
    """The default ``on_error``: an ERROR log line naming the count and the cause."""
    log.error(
        "vinr usage reporter: %d usage records for %s were not recorded (key %s): %s",
        len(batch),
        batch.subscription_item,
        batch.idempotency_key,
        exc,
    )


def _is_retryable(exc: VinrError) -> bool:
    status = exc.http_status
    return status is None or status >= 500 or status in (409, 429)


class UsageReporter:
    """Buffers usage records and sends them in per-item batches; see the module docstring.

    Args:
        client: the ``AsyncVinr`` to send with (its retries apply to every batch).
        max_batch: records per batch, 1 to 1000; an item's buffer is flushed when it holds this
            many.
        flush_interval_s: every buffer is flushed at least this often.
        max_buffered: records waiting (buffered or being sent) above which ``report`` waits.
        on_error: ``(batch, exc)``, sync or async, for batches that will not be recorded;
            defaults to logging at ERROR.
        max_concurrency: batches in flight at once (different items; one item's batches
            go in order, one at a time).

    Raises:
        ValueError: an argument out of range.
    """

    def __init__(
        self,
        client: AsyncVinr,
        *,
        max_batch: int = MAX_BATCH_RECORDS,
        flush_interval_s: float = 1.0,
        max_buffered: int = 100_000,
        on_error: ErrorHandler | None = None,
        max_concurrency: int = 4,
    ) -> None:
        if not 1 <= max_batch <= MAX_BATCH_RECORDS:
            raise ValueError(f"max_batch must be 1..{MAX_BATCH_RECORDS}, got {max_batch!r}")
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be >= 1, got {max_buffered!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self._client = client
        self._max_batch = max_batch
        self._interval_s = float(flush_interval_s)
        self._max_buffered = max_buffered
        self._on_error: ErrorHandler = on_error or log_failed_batch
        self._limit = asyncio.Semaphore(max_concurrency)
        self._pending: dict[str, list[UsageRecordParams]] = {}
        self._sealed: dict[str, deque[UsageBatch]] = {}
        self._buffered = 0
        self._run_id = uuid.uuid4().hex
        self._seq = 0
        self._space = asyncio.Condition()
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._pressure = False
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_error: VinrError | None = None
        self.records_sent = 0
        self.failed_records = 0

    @property
    def buffered(self) -> int:
        """Records accepted by ``report`` and not yet recorded or handed to ``on_error``."""
        return self._buffered

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        """Start the periodic flusher (``report`` starts it too, if needed)."""
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._closed:
            raise RuntimeError("UsageReporter is closed")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="vinr-usage-reporter")

    async def report(
        self,
        subscription_item: str,
        quantity: int,
        timestamp: int | None = None,
        action: Action = "increment",
    ) -> None:
        """Buffer one usage record; waits while ``max_buffered`` records are waiting.

        Raises:
            ValueError: a record the API would refuse (caught here, not later in a batch).
            RuntimeError: the reporter is closed, or closed while this call waited.
        """
        if not isinstance(subscription_item, str) or not subscription_item:
            raise ValueError(
                f"subscription_item must be a non-empty string, got {subscription_item!r}"
            )
        if (
            isinstance(quantity, bool)
            or not isinstance(quantity, int)
            or not (0 <= quantity <= MAX_QUANTITY)
        ):
            raise ValueError(f"quantity must be an integer in 0..2**53, got {quantity!r}")
        if timestamp is not None and (
            isinstance(timestamp, bool) or not isinstance(timestamp, int)
        ):
            raise ValueError(f"timestamp must be unix seconds (int), got {timestamp!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be 'increment' or 'set', got {action!r}")
        record: UsageRecordParams = {
            "quantity": quantity,
            "timestamp": int(time.time()) if timestamp is None else timestamp,
            "action": action,
        }
        self._ensure_started()
        async with self._space:
            while self._buffered >= self._max_buffered and not self._closed:
                self._pressure = True
                self._wake.set()
                await self._space.wait()
            if self._closed:
                raise RuntimeError("UsageReporter closed before the record was buffered")
            records = self._pending.setdefault(subscription_item, [])
            records.append(record)
            self._buffered += 1
            if len(records) >= self._max_batch:
                self._wake.set()

    async def flush(self) -> None:
        """Send everything buffered now; retryable failures stay buffered for the next try."""
        await self._flush_round(full_only=False)

    async def close(self) -> None:
        """Stop, send what is left, and hand whatever still cannot be sent to ``on_error``.

        Idempotent. ``report`` calls waiting for space raise ``RuntimeError``.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        async with self._space:
            self._space.notify_all()
        if self._task is not None:
            await self._task
        await self._flush_round(full_only=False)
        await self._give_up_remaining()

    aclose = close

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._interval_s
        while True:
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._closed:
                return
            now = loop.time()
            due = now >= deadline
            if due:
                deadline = now + self._interval_s
            full = due or self._pressure
            self._pressure = False
            if not await self._flush_round(full_only=not full):
                await self._pause()

    async def _pause(self) -> None:
        """After a retryable failure: wait one interval (or until close) before retrying."""
        try:
            async with asyncio.timeout(self._interval_s):
                await self._stop.wait()
        except TimeoutError:
            pass

    def _seal(self, full_only: bool) -> None:
        """Turn buffered records into batches with their keys; partial ones unless full_only."""
        for item in list(self._pending):
            records = self._pending[item]
            cut = len(records) - len(records) % self._max_batch if full_only else len(records)
            if cut == 0:
                continue
            queue = self._sealed.setdefault(item, deque())
            for start in range(0, cut, self._max_batch):
                self._seq += 1
                chunk = tuple(records[start : min(start + self._max_batch, cut)])
                queue.append(UsageBatch(item, chunk, f"usage-{self._run_id}-{self._seq}"))
            if cut == len(records):
                del self._pending[item]
            else:
                self._pending[item] = records[cut:]

    async def _flush_round(self, *, full_only: bool) -> bool:
        """Seal and send; False when some batch failed retryably and is kept."""
        async with self._flush_lock:
            self._seal(full_only)
            items = [item for item, queue in self._sealed.items() if queue]
            results = await asyncio.gather(*(self._send_item(item) for item in items))
            for item in items:
                if not self._sealed.get(item):
                    self._sealed.pop(item, None)
            return all(results)

    async def _send_item(self, item: str) -> bool:
        queue = self._sealed[item]
        while queue:
            batch = queue[0]
            try:
                async with self._limit:
                    await self._client.usage_records.create_batch(
                        subscription_item=item,
                        records=list(batch.records),
                        idempotency_key=batch.idempotency_key,
                    )
            except VinrError as exc:
                if _is_retryable(exc):
                    self._last_error = exc
                    log.warning(
                        "vinr usage reporter: %d records for %s kept for retry: %s",
                        len(batch),
                        item,
                        exc,
                    )
                    return False
                queue.popleft()
                self.failed_records += len(batch)
                await self._release(len(batch))
                await self._handle_error(batch, exc)
                continue
            except Exception:
                log.exception(
                    "vinr usage reporter: unexpected error sending %d records for %s; kept",
                    len(batch),
                    item,
                )
                return False
            queue.popleft()
            self.records_sent += len(batch)
            await self._release(len(batch))
        return True

    async def _release(self, count: int) -> None:
        async with self._space:
            self._buffered -= count
            self._space.notify_all()

    async def _handle_error(self, batch: UsageBatch, exc: VinrError) -> None:
        try:
            result = self._on_error(batch, exc)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception(
                "vinr usage reporter: on_error failed for %d records for %s",
                len(batch),
                batch.subscription_item,
            )

    async def _give_up_remaining(self) -> None:
        """At close: what retries could not deliver goes to ``on_error``, counted as failed."""
        cause = self._last_error or APIConnectionError("the reporter closed before sending")
        for queue in self._sealed.values():
            while queue:
                batch = queue.popleft()
                self.failed_records += len(batch)
                await self._release(len(batch))
                await self._handle_error(batch, cause)
        self._sealed.clear()
