"""What the hot path knows about meters and the customers events name: per-process caches.

Per event the ingest needs its meter (by account, mode and ``eventName``: key, formula and
the payload keys of the customer and the value) and, per meter and customer, the
customer's key, the meter's closing boundary for them (events before it are refused) and
the customer's "now" (the latest frozen time of a test clock one of its subscriptions runs
on, or real time). Both are cached here; a miss is loaded from Postgres for the whole
batch at once (one query for the meters, one for the customers).

Unknown event names and unknown customers are not cached: a meter or a customer created a
moment ago works at once, and what a refused request costs (one query) is bounded by the
key's rate limit.

**Staleness.** ``meter_epoch`` is bumped in the transaction of every change cached here (a
meter's status, a closing boundary, a test clock's time); this process reads it every
``METER_EPOCH_POLL_S`` and drops both caches when it moved. The caches are trusted only
while the epoch was read successfully within ``METER_CACHE_STALE_S``; past that (Postgres
away) the request reads the epoch itself first, or is answered 503. So an event is never
validated against a boundary that moved more than ``METER_CACHE_STALE_S`` earlier — the
settle time of a closing invoice outlasts that plus the publish deadline (``infra.settings``).
A cached customer also expires after ``_CUSTOMER_TTL_S`` (a new subscription on a test
clock changes its "now" without an epoch bump).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.meters import Formula, parse_formula
from domain.meterusage import event_customers
from domain.services import Services
from domain.store.meters import active_meters_by_event, meter_epoch
from domain.tenant import Tenant
from infra.epoch import EpochWatch
from infra.errors import DependencyUnavailable, refused_value
from infra.settings import METER_CACHE_STALE_S, METER_EPOCH_POLL_S

__all__ = ["CustomerSpot", "Meter", "MeterLookup"]

_MAX_CACHED = 10_000  # per cache; a full cache is cleared, not evicted entry by entry
_CUSTOMER_TTL_S = 60.0
# One read of the epoch may take this long. The staleness bound does not depend on it: the
# caches are trusted from when the latest successful read began.
_POLL_TIMEOUT_S = 2.0
_DOWN = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Meter:
    """A meter's essentials for the hot path."""

    pk: int
    id: str
    formula: Formula
    customer_key: str
    value_key: str


@dataclass(frozen=True, slots=True)
class CustomerSpot:
    """A customer as its meter's events see it."""

    customer_pk: int
    closing_until: int  # events before it are refused (0: nothing invoiced yet)
    clock_now: int | None  # a test clock's frozen time: the customer's "now"; None: real time


class MeterLookup:
    """One per endpoint; registers its epoch watch with ``services``."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._meters: dict[tuple[str, bool, str], Meter] = {}
        self._customers: dict[tuple[int, str], tuple[CustomerSpot, float]] = {}
        self._generation = 0  # +1 at every drop: a load begun before it is not cached
        self._epoch = EpochWatch(
            self._read_epoch,
            self.invalidate,
            poll_s=METER_EPOCH_POLL_S,
            timeout_s=_POLL_TIMEOUT_S,
            what="meter epoch",
        )
        self._reading: asyncio.Future[bool] | None = None
        services.watch(self._epoch.run)

    def invalidate(self) -> None:
        """Forget every cached meter and customer, and any load in flight."""
        self._meters.clear()
        self._customers.clear()
        self._generation += 1

    async def _read_epoch(self) -> int:
        return await meter_epoch(self._s.pool)

    async def _trusted(self) -> None:
        """Returns once the caches may be used: the epoch was read within
        ``METER_CACHE_STALE_S`` (else it is read now). DependencyUnavailable when it cannot be."""
        if time.monotonic() - self._epoch.read_at <= METER_CACHE_STALE_S:
            return
        reading = self._reading
        if reading is None:  # one read for every request that waits on it
            reading = self._reading = asyncio.ensure_future(self._epoch.poll())
            reading.add_done_callback(self._read_done)
        try:
            await asyncio.shield(reading)
        except _DOWN as exc:
            raise DependencyUnavailable("postgres", str(exc) or type(exc).__name__) from exc

    def _read_done(self, done: asyncio.Future[bool]) -> None:
        if self._reading is done:
            self._reading = None
        if not done.cancelled():
            done.exception()  # retrieved: a waiter that went away must not leave it unread

    async def meters(self, tenant: Tenant, names: Iterable[str]) -> dict[str, Meter]:
        """The active meter of each event name that has one (the others are absent)."""
        await self._trusted()
        account, live = tenant.account_id, tenant.livemode
        cache = self._meters
        found: dict[str, Meter] = {}
        missing: list[str] = []
        for name in names:
            hit = cache.get((account, live, name))
            if hit is None:
                missing.append(name)
            else:
                found[name] = hit
        if not missing:
            return found
        generation = self._generation
        rows = await self._query(active_meters_by_event, tenant, missing)
        for row in rows:
            meter = Meter(
                row["pk"],
                row["id"],
                parse_formula(row["formula"]),
                row["customer_key"],
                row["value_key"],
            )
            found[row["event_name"]] = meter
            if generation == self._generation:
                if len(cache) >= _MAX_CACHED:
                    cache.clear()
                cache[(account, live, row["event_name"])] = meter
        return found

    async def customers(
        self, tenant: Tenant, pairs: Iterable[tuple[int, str]]
    ) -> dict[tuple[int, str], CustomerSpot]:
        """Each (meter pk, customer id) whose customer is this account and mode's (the others
        are absent). Call after ``meters`` in the same request (it checked the epoch)."""
        now = time.monotonic()
        cache = self._customers
        found: dict[tuple[int, str], CustomerSpot] = {}
        missing: list[tuple[int, str]] = []
        for pair in pairs:
            hit = cache.get(pair)
            if hit is not None and hit[1] > now:
                found[pair] = hit[0]
            elif pair not in found:
                missing.append(pair)
        if not missing:
            return found
        generation = self._generation
        rows = await self._query(event_customers, tenant, list(dict.fromkeys(missing)))
        deadline = now + _CUSTOMER_TTL_S
        for row in rows:
            pair = (row["meter_pk"], row["customer_id"])
            spot = CustomerSpot(row["customer_pk"], row["closing_until"], row["clock_now"])
            found[pair] = spot
            if generation == self._generation:
                if len(cache) >= _MAX_CACHED:
                    cache.clear()
                cache[pair] = (spot, deadline)
        return found

    async def _query(self, fetch: Any, tenant: Tenant, arg: Any) -> list[asyncpg.Record]:
        try:
            rows: list[asyncpg.Record] = await fetch(self._s.pool, tenant, arg)
        except asyncpg.DataError as exc:
            raise refused_value(exc) from exc
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailable("postgres", str(exc)) from exc
        return rows
