"""The invoicer role: close ended periods, finalize drafts, collect and retry payments.

Safe to run several at once: every step claims its rows with SKIP LOCKED and the database
refuses a second invoice for a period. A period is priced only after the aggregator's
stored offsets have reached the topic's end offsets read after the period ended.

A tick works in batches of ``invoicer_batch`` rows, each batch one transaction of a fixed
number of statements, and repeats until nothing is due: a subscription whose test clock
jumped across several periods has them closed one after the other, in order, and a
retry schedule crossed by the clock runs each retry in turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import asyncpg
from redis.asyncio import Redis

from domain.billing import (
    InvoiceRules,
    close_periods,
    collect_invoices,
    finalize_invoices,
    mark_closing,
    settle_clocks,
)
from domain.clock import now_s
from domain.itemmeta import ItemMetaStore
from domain.watermark import Watermark
from infra.db import create_pool
from infra.lifecycle import PollingService
from infra.settings import Settings
from infra.telemetry import M

__all__ = ["Invoicer"]

log = logging.getLogger(__name__)

# Three index-friendly parts: real-clock subscriptions by period end, test-clock ones by
# their clock's frozen time, and canceled ones still owing their final invoice.
# Batches in flight at once, each on its own connection: while Postgres writes one, Python
# prices the next (measured on 2 cores: see bench/invoicer.py).
_LANES = 2

# (row id, subscription id) of each row a step processed.
_Results: TypeAlias = "Sequence[tuple[str, str | None]]"
_Step: TypeAlias = "Callable[[asyncpg.Connection[Any], list[str]], Awaitable[_Results]]"

_DUE_SUBSCRIPTIONS = """
SELECT id FROM (
    SELECT s.id, s.current_period_end AS due FROM subscriptions s
    WHERE s.test_clock_id IS NULL AND s.status IN ('active', 'past_due', 'unpaid')
      AND s.current_period_end <= $1
    UNION ALL
    SELECT s.id, s.current_period_end FROM subscriptions s
    JOIN test_clocks c ON c.id = s.test_clock_id
    WHERE s.test_clock_id IS NOT NULL AND s.status IN ('active', 'past_due', 'unpaid')
      AND s.current_period_end <= c.frozen_time
    UNION ALL
    SELECT s.id, coalesce(s.ended_at, 0) FROM subscriptions s WHERE s.final_invoice_pending
) d WHERE NOT (id = ANY($3::text[])) ORDER BY due, id LIMIT $2
"""

# Real-clock invoices by an index range on ``column``; test-clock ones by their clock.
_DUE_INVOICES = """
SELECT id FROM (
    SELECT i.id, {column} AS due FROM invoices i
    LEFT JOIN subscriptions s ON s.id = i.subscription_id
    WHERE i.status = $3 AND {column} <= $1 AND s.test_clock_id IS NULL
    UNION ALL
    SELECT i.id, {column} FROM test_clocks c
    JOIN subscriptions s ON s.test_clock_id = c.id
    JOIN invoices i ON i.subscription_id = s.id
    WHERE i.status = $3 AND {column} <= c.frozen_time
) d WHERE NOT (id = ANY($4::text[])) ORDER BY due, id LIMIT $2
"""

# Drafts due for finalization not yet marked closing (phase one of finalizing).
_DUE_CLOSING = _DUE_INVOICES.format(column="i.finalize_at").replace(
    "WHERE i.status = $3", "WHERE i.closing_at IS NULL AND i.status = $3"
)


class Invoicer(PollingService):
    def __init__(self, settings: Settings, *, pool: asyncpg.Pool | None = None) -> None:
        super().__init__()
        self._marked_at: float | None = None
        # Seconds spent waiting out the settle time so far: a fixed delay, not work.
        self.settle_waited_s = 0.0
        self.poll_s = settings.invoicer_poll_s
        self.name = "invoicer"
        self._settings = settings
        self._rules = InvoiceRules.from_settings(settings)
        self._pool = pool
        self._own_pool = pool is None
        self._redis: Redis | None = None
        self._meta: ItemMetaStore | None = None
        self._watermark: Watermark | None = None

    async def start(self) -> None:
        s = self._settings
        if self._pool is None:
            self._pool = await create_pool(s, min_size=1, max_size=4)
        self._redis = Redis.from_url(s.redis_url.get_secret_value())
        self._meta = ItemMetaStore(self._redis, s)
        self._watermark = Watermark(s, self._pool)
        await self._watermark.start()

    async def stop(self) -> None:
        self._stopping.set()
        if self._watermark is not None:
            watermark, self._watermark = self._watermark, None
            await watermark.stop()
        if self._redis is not None:
            redis, self._redis = self._redis, None
            await redis.aclose()
        if self._pool is not None and self._own_pool:
            pool, self._pool = self._pool, None
            await pool.close()

    def _parts(self) -> tuple[asyncpg.Pool, ItemMetaStore, Watermark]:
        if self._pool is None or self._meta is None or self._watermark is None:
            raise RuntimeError("invoicer not started")
        return self._pool, self._meta, self._watermark

    async def _usage_complete(self) -> bool:
        """Has the aggregator consumed everything the topic holds now? Asked after the rows
        to price were selected, so their periods ended before these end offsets were read:
        a closed window is complete."""
        _, _, watermark = self._parts()
        ends = await watermark.end_offsets()
        if await watermark.wait(ends, self._settings.watermark_timeout_s):
            return True
        log.warning("aggregator has not reached the topic end %s; invoicing waits", ends)
        return False

    async def _run_step(self, step: _Step, ids: list[str]) -> _Results:
        pool, meta, _ = self._parts()
        async with pool.acquire() as conn, meta.changes(conn) as changes:
            results = await step(conn, ids)
            # Ingest places usage by these (new period, status): written through on exit.
            changes.took(sub for _, sub in results)
        return results

    async def _drain(
        self,
        conn: asyncpg.Connection[Any],
        query: str,
        args: tuple[Any, ...],
        step: _Step,
        *,
        needs_usage: bool,
    ) -> int | None:
        """Batches of due rows through ``step``, ``_LANES`` at a time, until none is due;
        the number processed, or None when the aggregator is behind (nothing priced).

        Rows a step passes over (held by another transaction, no longer due) are not
        selected again in this drain; rows it processed may be, when they are due again
        (the next period, the next retry)."""
        batch = self._settings.invoicer_batch
        done, passed = 0, list[str]()
        while ids := [
            r["id"] for r in await conn.fetch(query, now_s(), batch * _LANES, *args, passed)
        ]:
            if needs_usage and not await self._usage_complete():
                return None
            lanes = await asyncio.gather(
                *(self._run_step(step, ids[k : k + batch]) for k in range(0, len(ids), batch))
            )
            processed = {row for results in lanes for row, _ in results}
            done += len(processed)
            passed.extend(i for i in ids if i not in processed)
        return done

    async def _close(self, conn: asyncpg.Connection[Any], ids: list[str]) -> _Results:
        return [(sub, sub) for _, sub in await close_periods(conn, ids, self._rules)]

    async def _mark_closing(self, conn: asyncpg.Connection[Any], ids: list[str]) -> _Results:
        marked = await mark_closing(conn, ids)
        if marked:
            self._marked_at = time.monotonic()
        return [(inv, sub) for inv, sub in marked]

    async def _finalize(self, conn: asyncpg.Connection[Any], ids: list[str]) -> _Results:
        settled = time.time() - self._settings.close_settle_s
        # Drafts marked closing: finalizing them changes nothing ingest caches.
        return [
            (inv, None) for inv, _ in await finalize_invoices(conn, ids, settled_before=settled)
        ]

    async def _settle(self) -> None:
        """Wait out the settle time of drafts marked closing in this pass, so they can be
        finalized in the same tick."""
        if self._marked_at is not None:
            left = self._marked_at + self._settings.close_settle_s - time.monotonic()
            self._marked_at = None
            if left > 0:
                started = time.monotonic()
                await self.idle(left)
                self.settle_waited_s += time.monotonic() - started

    async def _collect(self, conn: asyncpg.Connection[Any], ids: list[str]) -> _Results:
        # A paid invoice of an active subscription changes nothing ingest caches.
        return [
            (a.invoice_id, a.subscription_id if a.subscription_changed else None)
            for a in await collect_invoices(conn, ids, self._rules)
        ]

    async def tick(self) -> int:
        """Everything due, in batches, until nothing is: the number of steps taken (periods
        closed, drafts finalized, payment attempts made)."""
        pool, _, _ = self._parts()
        stages: list[tuple[str, tuple[Any, ...], _Step, bool]] = [
            (_DUE_SUBSCRIPTIONS, (), self._close, True),
            (_DUE_CLOSING, ("draft",), self._mark_closing, False),
            (_DUE_INVOICES.format(column="i.finalize_at"), ("draft",), self._finalize, True),
            (
                _DUE_INVOICES.format(column="i.next_payment_attempt"),
                ("open",),
                self._collect,
                False,
            ),
        ]
        steps = 0
        async with pool.acquire() as conn:
            # Passes until one does nothing: a row passed over because another transaction
            # held it (a finalize bumping its subscription, say) gets its turn in the next.
            while True:
                done, stalled = 0, False
                for query, args, step, needs_usage in stages:
                    if step == self._finalize:
                        await self._settle()
                    n = await self._drain(conn, query, args, step, needs_usage=needs_usage)
                    stalled = stalled or n is None
                    done += n or 0
                steps += done
                if not done or stalled:
                    break
            await settle_clocks(conn)
        M.invoicer_last_pass.set_to_current_time()
        if steps:
            log.info("invoicer: %d step(s)", steps)
        return steps
