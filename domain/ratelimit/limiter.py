"""Per-key rate limits in an API process: admit from leased tokens, lease more from Redis.

``RateLimiter.control`` and ``RateLimiter.usage`` each hold, per API key, a ``LocalBucket``
of tokens leased from the key's token bucket in Redis (``domain.ratelimit.script``). A
request is admitted by ``take(key_id)`` — a dict lookup, a clock read and a decrement, no
coroutine — and only when that says no does it ``await acquire(tenant)``, which leases the
next ``lease_size`` tokens (one Redis call shared by every request of that key waiting
meanwhile) or raises ``RateLimited``. When Redis has no token, the bucket refuses locally
for as long as Redis said to wait, so a key far over its limit costs Redis one call per
wait, not one per request. The bounds this keeps across processes are in
``domain.ratelimit.rules``.

Each account's limits (defaults from settings, overrides from Postgres) are read when a
lease needs them and cached for ``LIMITS_TTL_S``: a changed limit reaches every running
process within that time. If Postgres does not answer, the last known limits (or the
defaults) stay in use and are asked for again ``LIMITS_RETRY_S`` later.

Redis unreachable for a lease:

- control plane: fail open. The request is admitted, a warning is logged and
  ``vinr_rate_limit_unchecked_total{plane="control"}`` counts it; for ``UNCHECKED_S`` the
  plane admits without trying Redis, so an outage costs one failed call a second, not one
  per request. A lease waits at most ``CONTROL_LEASE_TIMEOUT_S`` (reads do not need Redis
  otherwise, and should not hang on it).
- usage plane: 503 (``DependencyUnavailable``), like the idempotency claim that would
  follow: ingest cannot accept anything without Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from redis.exceptions import RedisError

from domain.ratelimit.rules import (
    Limit,
    LocalBucket,
    Plane,
    defaults,
    lease_size,
    limits_in_effect,
    refusal,
)
from domain.ratelimit.script import LEASE
from domain.ratelimit.store import fetch_overrides
from domain.tenant import Tenant
from infra.errors import DependencyUnavailable
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings
from infra.telemetry import M

__all__ = [
    "CONTROL_LEASE_TIMEOUT_S",
    "LIMITS_RETRY_S",
    "LIMITS_TTL_S",
    "UNCHECKED_S",
    "PlaneLimiter",
    "RateLimiter",
]

log = logging.getLogger(__name__)

LIMITS_TTL_S = 10.0  # an account's limits, once read, are used for this long
LIMITS_RETRY_S = 1.0  # after Postgres failed to answer, ask again this much later
UNCHECKED_S = 1.0  # control plane: after a failed lease, admit without Redis this long
CONTROL_LEASE_TIMEOUT_S = 0.5
_MAX_BUCKETS = 10_000  # beyond this many keys, idle buckets are forgotten


class RateLimiter:
    """The API process's limiter; ``pipe`` and ``pool`` return the process's Redis pipe and
    Postgres pool when called (raising ``DependencyUnavailable`` when there is none).

    ``clock`` (monotonic seconds) replaces both the local clock and Redis's ``TIME``: for
    tests that step time by hand. Production leaves it unset.
    """

    def __init__(
        self,
        settings: Settings,
        pipe: Callable[[], ScriptPipe],
        pool: Callable[[], asyncpg.Pool],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self._pipe = pipe
        self._pool = pool
        self._own_clock = clock is not None
        self.clock: Callable[[], float] = clock or time.monotonic
        self.defaults = defaults(settings)
        self._limits: dict[str, tuple[dict[Plane, Limit], float]] = {}
        self._registered: tuple[ScriptPipe, bytes] | None = None
        self.control = PlaneLimiter(self, Plane.CONTROL, fail_open=True)
        self.usage = PlaneLimiter(self, Plane.USAGE, fail_open=False)

    async def limit(self, account_id: str, plane: Plane) -> Limit:
        """The limit in effect for ``account_id``'s keys on ``plane`` (cached)."""
        now = self.clock()
        hit = self._limits.get(account_id)
        if hit is not None and hit[1] > now:
            return hit[0][plane]
        try:
            overrides = await fetch_overrides(self._pool(), account_id)
        except (
            DependencyUnavailable,
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
        ) as exc:
            known = hit[0] if hit is not None else self.defaults
            log.warning(
                "rate limits of %s not read (%s); using %s",
                account_id,
                exc,
                "the last known" if hit is not None else "the defaults",
            )
            self._limits[account_id] = (known, now + LIMITS_RETRY_S)
            return known[plane]
        limits = limits_in_effect(self.settings, overrides)
        if len(self._limits) >= _MAX_BUCKETS:
            self._limits.clear()
        self._limits[account_id] = (limits, now + LIMITS_TTL_S)
        return limits[plane]

    async def lease(
        self, plane: Plane, key_id: str, limit: Limit, *, timeout_s: float | None = None
    ) -> tuple[int, float]:
        """(tokens granted, seconds until one is there when none was): one script call.
        Raises RedisError/OSError/TimeoutError, DependencyUnavailable before start-up."""
        pipe = self._pipe()
        registered = self._registered
        if registered is None or registered[0] is not pipe:
            registered = self._registered = (pipe, pipe.register(LEASE))
        now = str(round(self.clock() * 1_000_000)) if self._own_clock else ""
        call = pipe.evalsha(
            registered[1],
            [self.settings.key("rl", plane.value, key_id)],
            [limit.rate, limit.burst, lease_size(limit), now],
        )
        reply: Any = await (call if timeout_s is None else asyncio.wait_for(call, timeout_s))
        granted, wait_us = reply
        return int(granted), int(wait_us) / 1_000_000


class PlaneLimiter:
    """One plane's local buckets, one per API key."""

    def __init__(self, owner: RateLimiter, plane: Plane, *, fail_open: bool) -> None:
        self.plane = plane
        self._owner = owner
        self._clock = owner.clock
        self._fail_open = fail_open
        self._timeout_s = CONTROL_LEASE_TIMEOUT_S if fail_open else None
        self._buckets: dict[str, LocalBucket] = {}
        self._unchecked_until = 0.0
        # counter children resolved once: labels() costs more than what they count
        self._refused = M.rate_limited.labels(plane.value)
        self._leases = M.rate_limit_leases.labels(plane.value)
        self._unchecked = M.rate_limit_unchecked.labels(plane.value)

    def take(self, key_id: str) -> bool:
        """Admit a request of ``key_id`` from its leased tokens, synchronously; False means
        ``await acquire(tenant)``."""
        bucket = self._buckets.get(key_id)
        return bucket is not None and bucket.take(self._clock())

    async def acquire(self, tenant: Tenant) -> None:
        """Admit one request of ``tenant.key_id`` or raise: RateLimited (429) when the key
        is over its limit; DependencyUnavailable (503) on the usage plane when Redis is
        unreachable."""
        key = tenant.key_id
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._add(key)
        while True:
            now = self._clock()
            if bucket.take(now):
                return
            if self._unchecked_until > now:
                self._unchecked.inc()
                return
            wait_s = bucket.blocked_for(now)
            if wait_s > 0:
                self._refused.inc()
                raise refusal(self.plane, bucket.limit, wait_s)
            leasing = bucket.leasing
            if leasing is not None:
                await asyncio.shield(leasing)  # one lease at a time per key; then look again
                continue
            await self._lease(bucket, tenant)

    async def _lease(self, bucket: LocalBucket, tenant: Tenant) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        bucket.leasing = done
        try:
            limit = bucket.limit = await self._owner.limit(tenant.account_id, self.plane)
            try:
                granted, wait_s = await self._owner.lease(
                    self.plane, tenant.key_id, limit, timeout_s=self._timeout_s
                )
            except (RedisError, OSError, TimeoutError, DependencyUnavailable) as exc:
                detail = str(exc) or type(exc).__name__
                if not self._fail_open:
                    raise DependencyUnavailable("redis", detail) from exc
                self._unchecked_until = self._clock() + UNCHECKED_S
                log.warning(
                    "Redis unreachable for a rate-limit lease (%s): %s requests are admitted"
                    " unchecked for the next %.0f s",
                    detail,
                    self.plane.value,
                    UNCHECKED_S,
                )
                return
            self._leases.inc()
            now = self._clock()
            if granted:
                bucket.fill(granted, now)
            else:
                bucket.block(wait_s, now)
        finally:
            bucket.leasing = None
            done.set_result(None)

    def _add(self, key: str) -> LocalBucket:
        buckets = self._buckets
        if len(buckets) >= _MAX_BUCKETS:
            now = self._clock()
            for idle in [k for k, b in buckets.items() if b.idle(now)]:
                del buckets[idle]
        bucket = buckets[key] = LocalBucket(self._owner.defaults[self.plane])
        return bucket
