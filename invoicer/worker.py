"""The invoicer role: close ended periods, finalize drafts, collect and retry payments.

Safe to run several at once: every step locks its row with SKIP LOCKED and the database
refuses a second invoice for a period. A period is priced only after the aggregator's
stored offsets have reached the topic's end offsets read after the period ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from redis.asyncio import Redis

from aggregator.watermark import Watermark
from invoicer.billing import InvoiceRules, close_period, collect, finalize
from vinr.clock import now_s
from vinr.db import create_pool
from vinr.itemmeta import ItemMetaStore
from vinr.settings import Settings

__all__ = ["Invoicer"]

log = logging.getLogger(__name__)

_DUE_SUBSCRIPTIONS = """
SELECT s.id FROM subscriptions s LEFT JOIN test_clocks c ON c.id = s.test_clock_id
WHERE (s.status IN ('active', 'past_due', 'unpaid')
       AND s.current_period_end <= coalesce(c.frozen_time, $1))
   OR s.final_invoice_pending
ORDER BY s.current_period_end LIMIT $2
"""

_DUE_INVOICES = """
SELECT i.id, i.subscription_id FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
LEFT JOIN test_clocks c ON c.id = s.test_clock_id
WHERE i.status = $3 AND {column} <= coalesce(c.frozen_time, $1)
ORDER BY i.period_start, i.created LIMIT $2
"""


class Invoicer:
    def __init__(self, settings: Settings, *, pool: asyncpg.Pool | None = None) -> None:
        self._settings = settings
        self._rules = InvoiceRules.from_settings(settings)
        self._pool = pool
        self._own_pool = pool is None
        self._redis: Redis | None = None
        self._meta: ItemMetaStore | None = None
        self._watermark: Watermark | None = None
        self._stopping = asyncio.Event()

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

    async def __aenter__(self) -> Invoicer:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Until ``request_stop``; the step in hand finishes first."""
        while not self._stopping.is_set():
            try:
                worked = await self.tick()
            except (OSError, asyncpg.PostgresError) as exc:
                log.error("invoicer tick failed: %s; retrying", exc)
                worked = 0
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._settings.invoicer_poll_s)

    def _parts(self) -> tuple[asyncpg.Pool, ItemMetaStore, Watermark]:
        if self._pool is None or self._meta is None or self._watermark is None:
            raise RuntimeError("invoicer not started")
        return self._pool, self._meta, self._watermark

    async def _due(self, status: str, column: str) -> list[tuple[str, str]]:
        """(invoice id, subscription id) of invoices in ``status`` whose ``column`` is due."""
        pool, _, _ = self._parts()
        rows = await pool.fetch(_DUE_INVOICES.format(column=column), now_s(),
                                self._settings.invoicer_batch, status)
        return [(r["id"], r["subscription_id"]) for r in rows]

    async def tick(self) -> int:
        """One pass over everything due; the number of steps taken."""
        pool, meta, watermark = self._parts()
        s = self._settings
        subs = [r["id"] for r in await pool.fetch(_DUE_SUBSCRIPTIONS, now_s(), s.invoicer_batch)]
        drafts = await self._due("draft", "i.finalize_at")
        if subs or drafts:
            ends = await watermark.end_offsets()
            if not await watermark.wait(ends, s.watermark_timeout_s):
                log.warning("aggregator has not reached the topic end %s; invoicing waits", ends)
                return 0
        steps = 0
        touched: list[str] = []
        async with pool.acquire() as conn:
            for sub_id in subs:
                while (invoice_id := await close_period(conn, sub_id, self._rules)) is not None:
                    steps += 1
                    touched.append(sub_id)
                    if await finalize(conn, invoice_id):
                        await collect(conn, invoice_id, self._rules)
            for invoice_id, sub_id in await self._due("draft", "i.finalize_at"):
                if await finalize(conn, invoice_id):
                    steps += 1
                    touched.append(sub_id)
                    await collect(conn, invoice_id, self._rules)
            for invoice_id, sub_id in await self._due("open", "i.next_payment_attempt"):
                if await collect(conn, invoice_id, self._rules) is not None:
                    steps += 1
                    touched.append(sub_id)
            if touched:
                await meta.refresh(conn, list(dict.fromkeys(touched)))
        if steps:
            log.info("invoicer: %d step(s)", steps)
        return steps
