"""What ingest needs to know about a subscription item, cached in Redis.

Postgres is the source of truth. Every writer that changes a subscription (control plane,
invoicer) bumps ``subscriptions.version`` in its transaction and, after commit, writes the
fresh metadata through with ``put`` — a Lua compare on the version, so a slow writer can
never overwrite newer metadata with older. Ingest reads it from Redis and falls back to
Postgres (read-through) on a miss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from domain.periods import boundary
from infra.settings import Settings

__all__ = ["ItemMeta", "ItemMetaStore", "load_item_meta", "load_subscription_item_metas"]

_TTL_S = 7 * 86_400

_PUT_IF_NEWER = """
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and tonumber(cur) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


@dataclass(frozen=True, slots=True)
class ItemMeta:
    pk: int
    account_id: str
    livemode: bool
    item_id: str
    subscription_id: str
    status: str  # the subscription's status
    deleted: bool
    usage_type: str
    aggregate_usage: str | None
    period_start: int
    period_end: int
    prev_period_start: int | None
    prev_open: bool  # the previous period's invoice is not finalized yet
    frozen_time: int | None  # the test clock's time, when the subscription has one
    version: int

    def dumps(self) -> bytes:
        return orjson.dumps(self)  # orjson serializes dataclasses natively, fast

    @classmethod
    def loads(cls, raw: bytes | str) -> ItemMeta:
        return cls(**orjson.loads(raw))


_SELECT = """
SELECT si.pk, si.id, si.account_id, si.livemode, si.deleted, s.id AS sub_id, s.status,
       s.current_period_start, s.current_period_end, s.anchor, s.interval, s.interval_count,
       s.period_index, s.version, c.frozen_time, p.usage_type, p.aggregate_usage,
       (SELECT CASE WHEN i.closing_at IS NULL THEN i.status ELSE 'closing' END
          FROM invoices i
         WHERE i.subscription_id = s.id AND i.billing_reason = 'subscription_cycle'
           AND i.period_end = s.current_period_start) AS prev_status
FROM subscription_items si
JOIN subscriptions s ON s.id = si.subscription_id
JOIN prices p ON p.id = si.price_id
LEFT JOIN test_clocks c ON c.id = s.test_clock_id
"""


def _meta(row: asyncpg.Record) -> ItemMeta:
    index = row["period_index"]
    prev_start = (
        boundary(row["anchor"], row["interval"], row["interval_count"], index - 1)
        if index > 0
        else None
    )
    return ItemMeta(
        pk=row["pk"],
        account_id=row["account_id"],
        livemode=row["livemode"],
        item_id=row["id"],
        subscription_id=row["sub_id"],
        status=row["status"],
        deleted=row["deleted"],
        usage_type=row["usage_type"],
        aggregate_usage=row["aggregate_usage"],
        period_start=row["current_period_start"],
        period_end=row["current_period_end"],
        prev_period_start=prev_start,
        prev_open=index > 0 and row["prev_status"] in (None, "draft"),
        frozen_time=row["frozen_time"],
        version=row["version"],
    )


async def load_item_meta(
    conn: asyncpg.Connection[Any] | asyncpg.Pool, account_id: str, livemode: bool, item_id: str
) -> ItemMeta | None:
    row = await conn.fetchrow(
        _SELECT + " WHERE si.account_id = $1 AND si.livemode = $2 AND si.id = $3",
        account_id,
        livemode,
        item_id,
    )
    return None if row is None else _meta(row)


async def load_subscription_item_metas(
    conn: asyncpg.Connection[Any] | asyncpg.Pool, subscription_ids: list[str]
) -> list[ItemMeta]:
    rows = await conn.fetch(
        _SELECT + " WHERE si.subscription_id = ANY($1::text[])", subscription_ids
    )
    return [_meta(r) for r in rows]


class ItemMetaStore:
    """The Redis side: keys ``{prefix}item:{account}:{mode}:{item_id}`` (hash: v, d)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._put = redis.register_script(_PUT_IF_NEWER)

    def key(self, account_id: str, livemode: bool, item_id: str) -> str:
        return self._settings.key("item", account_id, "l" if livemode else "t", item_id)

    async def put(self, metas: list[ItemMeta]) -> None:
        """One pipelined round trip for all of them (the invoicer refreshes thousands)."""
        if not metas:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for meta in metas:
                await self._put(
                    keys=[self.key(meta.account_id, meta.livemode, meta.item_id)],
                    args=[meta.version, meta.dumps(), _TTL_S],
                    client=pipe,
                )
            await pipe.execute()

    async def get(self, account_id: str, livemode: bool, item_id: str) -> ItemMeta | None:
        raw = await self._redis.hget(self.key(account_id, livemode, item_id), "d")
        return None if raw is None else ItemMeta.loads(raw)

    async def refresh(
        self, conn: asyncpg.Connection[Any] | asyncpg.Pool, subscription_ids: list[str]
    ) -> None:
        """Write through the current metadata of these subscriptions' items (after commit)."""
        if subscription_ids:
            await self.put(await load_subscription_item_metas(conn, subscription_ids))
