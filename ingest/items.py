"""What the hot path knows about subscription items: metadata, its caches, and Postgres.

Per request, the item's metadata comes from Redis, read alongside the idempotency claim;
decoding it and laying out its periods (``ingest.rules.calendar``) are cached here per
metadata value, so a busy item costs neither. Postgres is read only on a Redis miss (the
result is written through to Redis) and around period boundaries, when the cached period
has ended or a record lies past it: then the item is re-read with its subscription's
schedule, and that answer is reused for ``_FRESH_META_S``.
"""

from __future__ import annotations

import logging
import time

import asyncpg
from redis.exceptions import RedisError

from domain.itemmeta import ItemMeta, load_item_meta
from domain.services import Services
from domain.tenant import Tenant
from infra.errors import DependencyUnavailable, NotFound, refused_value
from ingest.rules import Calendar, Schedule, calendar

__all__ = ["ItemLookup"]

log = logging.getLogger(__name__)

_FRESH_META_S = 1.0  # how long a Postgres re-read of a rolled-over item is reused
_MAX_CACHED = 10_000  # per cache; a full cache is cleared, not evicted entry by entry

_SCHEDULE = (
    "SELECT s.anchor, s.interval, s.interval_count, s.cancel_at_period_end"
    " FROM subscriptions s WHERE s.id = $1"
)


class ItemLookup:
    """One per endpoint; ``services`` as the endpoint's."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._decoded: dict[bytes, ItemMeta] = {}
        # calendar(meta) by id(meta); the entry keeps meta alive, so the id is its own
        self._calendars: dict[int, tuple[ItemMeta, Calendar]] = {}
        self._fresh: dict[tuple[str, bool, str], tuple[float, ItemMeta, Schedule]] = {}

    async def meta(self, tenant: Tenant, item_id: str, raw: bytes) -> ItemMeta:
        """The item's metadata from ``raw`` (what Redis had; empty: a miss, read through)."""
        if raw:
            meta = self._decoded.get(raw)
            if meta is None:
                if len(self._decoded) > _MAX_CACHED:
                    self._decoded.clear()
                meta = self._decoded[raw] = ItemMeta.loads(raw)
            return meta
        loaded = await self._load(tenant, item_id)
        try:
            await self._s.meta.put([loaded])
        except (RedisError, OSError):
            log.warning("could not cache item metadata for %s", item_id)
        return loaded

    async def fresh(self, tenant: Tenant, meta: ItemMeta) -> tuple[ItemMeta, Schedule]:
        """The item re-read from Postgres with its period schedule, when the cached period
        has ended or a record lies past it (rare: around period boundaries)."""
        key = (tenant.account_id, tenant.livemode, meta.item_id)
        hit = self._fresh.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now and hit[1].version >= meta.version:
            return hit[1], hit[2]
        fresh = await self._load(tenant, meta.item_id)
        try:
            row = await self._s.pool.fetchrow(_SCHEDULE, fresh.subscription_id)
        except asyncpg.DataError as exc:
            raise refused_value(exc) from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailable("postgres", str(exc)) from exc
        if row is None:
            raise NotFound(f"no such subscription item: '{meta.item_id}'", param="subscriptionItem")
        schedule = Schedule(
            row["anchor"], row["interval"], row["interval_count"], row["cancel_at_period_end"]
        )
        if fresh.version > meta.version:
            try:
                await self._s.meta.put([fresh])
            except (RedisError, OSError):
                log.warning("could not cache item metadata for %s", meta.item_id)
        if len(self._fresh) > _MAX_CACHED:
            self._fresh.clear()
        self._fresh[key] = (now + _FRESH_META_S, fresh, schedule)
        return fresh, schedule

    def calendar(self, meta: ItemMeta, now: int, schedule: Schedule | None) -> Calendar:
        """The periods around ``now``; cached per metadata value when no schedule is given
        (the cached period alone is enough)."""
        if schedule is not None:
            return calendar(meta, now, schedule)
        hit = self._calendars.get(id(meta))
        if hit is not None and hit[0] is meta:
            return hit[1]
        cal = calendar(meta, now, None)
        if len(self._calendars) > _MAX_CACHED:
            self._calendars.clear()
        self._calendars[id(meta)] = (meta, cal)
        return cal

    async def _load(self, tenant: Tenant, item_id: str) -> ItemMeta:
        try:
            loaded = await load_item_meta(self._s.pool, tenant.account_id, tenant.livemode, item_id)
        except asyncpg.DataError as exc:
            raise refused_value(exc) from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailable("postgres", str(exc)) from exc
        if loaded is None:
            raise NotFound(f"no such subscription item: '{item_id}'", param="subscriptionItem")
        return loaded
