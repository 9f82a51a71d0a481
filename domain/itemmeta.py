"""What ingest needs to know about a subscription item, cached in Redis, and the one rule
that keeps the cache fresh.

Postgres is the source of truth; ingest reads the metadata from Redis and falls back to
Postgres (read-through) on a miss.

The invalidation rule: a change to anything ``ItemMeta`` is built from — a subscription's
status, period, items or test clock time, or its previous period's invoice being marked
closing or finalized without having been marked closing (a closing invoice reads as closing
whatever its status) — bumps ``subscriptions.version`` in the writing transaction, and after
commit the subscription's items' metadata is written through (``ItemMetaStore.refresh``) as
a Lua compare on the version, so a slow writer can never overwrite newer metadata with
older. Only this module writes ``version``: ``bump`` and ``bump_clock`` bump the given
subscriptions, ``update_subscriptions`` runs the caller's ``UPDATE`` with the bump in the
same statement; each returns the subscription ids to write through. ``ItemMetaStore.changes``
pairs the two halves for one unit of work: what it bumps is refreshed when it ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from redis.asyncio import Redis

from domain.periods import boundary
from infra.settings import Settings

__all__ = [
    "Changes",
    "ItemMeta",
    "ItemMetaStore",
    "bump",
    "bump_clock",
    "load_item_meta",
    "load_subscription_item_metas",
    "update_subscriptions",
]

_TTL_S = 7 * 86_400

# KEYS[k] gets version ARGV[2k] and data ARGV[2k+1] unless it holds a newer version;
# ARGV[1] is the TTL. Many keys per call: one command to encode and parse, not one per key.
_PUT_IF_NEWER = """
local written = 0
for k = 1, #KEYS do
  local cur = redis.call('HGET', KEYS[k], 'v')
  if not (cur and tonumber(cur) > tonumber(ARGV[2 * k])) then
    redis.call('HSET', KEYS[k], 'v', ARGV[2 * k], 'd', ARGV[2 * k + 1])
    redis.call('EXPIRE', KEYS[k], ARGV[1])
    written = written + 1
  end
end
return written
"""

# Keys per script call: long enough to amortize a command, short enough not to hold Redis
# (single-threaded) for more than about a millisecond.
_PUT_CHUNK = 200


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
    meter_event: str | None = None  # the event name of the meter the item's price bills

    def dumps(self) -> bytes:
        return orjson.dumps(self)  # orjson serializes dataclasses natively, fast

    @classmethod
    def loads(cls, raw: bytes | str) -> ItemMeta:
        return cls(**orjson.loads(raw))


_SELECT = """
SELECT si.pk, si.id, si.account_id, si.livemode, si.deleted, s.id AS sub_id, s.status,
       s.current_period_start, s.current_period_end, s.anchor, s.interval, s.interval_count,
       s.period_index, s.version, c.frozen_time, p.usage_type, p.aggregate_usage,
       (SELECT m.event_name FROM meters m WHERE m.pk = p.meter_pk) AS meter_event,
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
        meter_event=row["meter_event"],
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


async def bump(conn: asyncpg.Connection[Any], sub_ids: Iterable[str | None]) -> list[str]:
    """Bump these subscriptions' version (inside the caller's transaction); the ids to
    write through after commit. None (an invoice without subscription) is passed over."""
    ids = sorted({i for i in sub_ids if i is not None})
    if ids:
        await conn.execute(
            "UPDATE subscriptions SET version = version + 1 WHERE id = ANY($1::text[])", ids
        )
    return ids


async def bump_clock(conn: asyncpg.Connection[Any], clock_id: str) -> list[str]:
    """Bump the version of every subscription on this test clock (its time moved)."""
    rows = await conn.fetch(
        "UPDATE subscriptions SET version = version + 1 WHERE test_clock_id = $1 RETURNING id",
        clock_id,
    )
    return [r["id"] for r in rows]


async def update_subscriptions(
    conn: asyncpg.Connection[Any],
    assignments: str,
    rest: str,
    *args: Any,
    returning: str = "s.id",
) -> list[asyncpg.Record]:
    """``UPDATE subscriptions s SET {assignments}, <version bump> {rest} RETURNING
    {returning}``: the caller's change and the bump in one statement. ``rest`` is the
    ``FROM``/``WHERE`` part; the rows returned name the subscriptions to write through."""
    return list(
        await conn.fetch(
            f"UPDATE subscriptions s SET {assignments}, version = s.version + 1 {rest}"
            f" RETURNING {returning}",
            *args,
        )
    )


class Changes:
    """The subscriptions one unit of work bumped (see ``ItemMetaStore.changes``)."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self._conn = conn
        self.ids: set[str] = set()

    async def bump(self, sub_ids: Iterable[str | None]) -> None:
        self.ids.update(await bump(self._conn, sub_ids))

    async def bump_clock(self, clock_id: str) -> list[str]:
        ids = await bump_clock(self._conn, clock_id)
        self.ids.update(ids)
        return ids

    async def update(self, assignments: str, rest: str, *args: Any) -> None:
        """``update_subscriptions`` in this unit of work."""
        rows = await update_subscriptions(self._conn, assignments, rest, *args)
        self.ids.update(r["id"] for r in rows)

    def took(self, sub_ids: Iterable[str | None]) -> None:
        """Take the subscriptions an operation with its own transaction reports as changed
        (the billing operations do): it bumped them there."""
        self.ids.update(i for i in sub_ids if i is not None)


class ItemMetaStore:
    """The Redis side: keys ``{prefix}item:{account}:{mode}:{item_id}`` (hash: v, d)."""

    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._put = redis.register_script(_PUT_IF_NEWER)

    def key(self, account_id: str, livemode: bool, item_id: str) -> str:
        return self._settings.key("item", account_id, "l" if livemode else "t", item_id)

    async def put(self, metas: list[ItemMeta]) -> None:
        """One pipelined round trip for all of them, a script call per ``_PUT_CHUNK`` keys
        (the invoicer refreshes thousands)."""
        if not metas:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for lo in range(0, len(metas), _PUT_CHUNK):
                chunk = metas[lo : lo + _PUT_CHUNK]
                args: list[int | bytes] = [_TTL_S]
                for meta in chunk:
                    args += (meta.version, meta.dumps())
                await self._put(
                    keys=[self.key(m.account_id, m.livemode, m.item_id) for m in chunk],
                    args=args,
                    client=pipe,
                )
            await pipe.execute()

    async def get(self, account_id: str, livemode: bool, item_id: str) -> ItemMeta | None:
        raw = await self._redis.hget(self.key(account_id, livemode, item_id), "d")
        return None if raw is None else ItemMeta.loads(raw)

    async def refresh(
        self, conn: asyncpg.Connection[Any] | asyncpg.Pool, subscription_ids: Iterable[str]
    ) -> None:
        """Write through the current metadata of these subscriptions' items (after commit)."""
        ids = sorted(set(subscription_ids))
        if ids:
            await self.put(await load_subscription_item_metas(conn, ids))

    @asynccontextmanager
    async def changes(self, conn: asyncpg.Connection[Any]) -> AsyncIterator[Changes]:
        """A unit of work whose bumped subscriptions are written through when it ends
        without error. Open its transactions inside, so the refresh follows their commit."""
        changes = Changes(conn)
        yield changes
        await self.refresh(conn, changes.ids)
