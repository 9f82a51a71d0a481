"""The rate limiter against real Redis and Postgres: the token-bucket script's arithmetic,
two limiters ("two processes") sharing one key's budget, the cached per-account limits,
the overrides' storage, and what happens when Redis or Postgres does not answer."""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from domain.accounts import create_account
from domain.ratelimit import Limit, Overrides, Plane, PlaneLimiter, RateLimiter
from domain.ratelimit.limiter import LIMITS_RETRY_S, LIMITS_TTL_S, UNCHECKED_S
from domain.ratelimit.rules import LEASE_TTL_S, lease_size
from domain.ratelimit.script import LEASE
from domain.ratelimit.store import fetch_overrides, set_overrides
from domain.tenant import Tenant
from infra.devenv import free_port
from infra.errors import DependencyUnavailable, RateLimited
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings
from tests.support.sqlscan import ROOT, modules, sql_tables

US = 1_000_000


class SteppedClock:
    """A monotonic clock that moves only when told (seconds)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _pipe(settings: Settings) -> ScriptPipe:
    return ScriptPipe(settings.redis_url.get_secret_value(), timeout_s=5, connect_timeout_s=2)


@pytest.fixture
async def pipes(settings: Settings) -> AsyncIterator[tuple[ScriptPipe, ScriptPipe]]:
    """Two connections: what two API processes would have."""
    first, second = _pipe(settings), _pipe(settings)
    yield first, second
    await first.close()
    await second.close()


def _returning(pipe: ScriptPipe) -> Callable[[], ScriptPipe]:
    return lambda: pipe


def _with(settings: Settings, **changes: int) -> Settings:
    return Settings(**(settings.model_dump() | changes))


def _tenant(account: str = "acct_without_overrides") -> Tenant:
    return Tenant(account, False, f"key_{uuid.uuid4().hex[:24]}")


def _no_pool() -> asyncpg.Pool:
    raise DependencyUnavailable("postgres", "not connected")


def _sample(name: str, plane: Plane) -> float:
    return REGISTRY.get_sample_value(name, {"plane": plane.value}) or 0.0


async def _admit(plane: PlaneLimiter, tenant: Tenant) -> bool:
    """One request through the limiter as the API makes it: True admitted, False 429."""
    if plane.take(tenant.key_id):
        return True
    try:
        await plane.acquire(tenant)
    except RateLimited:
        return False
    return True


# --- the script -------------------------------------------------------------------------


async def test_the_bucket_script(settings: Settings, pipes: tuple[ScriptPipe, ScriptPipe]) -> None:
    pipe = pipes[0]
    sha = pipe.register(LEASE)
    key = settings.key("rl", "test", uuid.uuid4().hex)
    t0 = 5_000 * US

    async def lease(rate: int, burst: int, want: int, at: int) -> list[int]:
        reply: list[int] = await pipe.evalsha(sha, [key], [rate, burst, want, at])
        return reply

    # A new bucket is full: it grants what is asked up to what it holds.
    assert await lease(10, 5, 3, t0) == [3, 0]
    assert await lease(10, 5, 3, t0) == [2, 0]
    # Empty: nothing, and the µs until one whole token is there (1/10 s).
    assert await lease(10, 5, 3, t0) == [0, 100_000]
    assert await lease(10, 5, 3, t0 + 50_000) == [0, 50_000]  # half a token so far
    assert await lease(10, 5, 3, t0 + 100_000) == [1, 0]
    # A clock that went back refills nothing and does not move the bucket's time back.
    assert await lease(10, 5, 3, t0) == [0, 100_000]
    assert await lease(10, 5, 3, t0 + 150_000) == [0, 50_000]
    # Refill stops at the burst, however long the bucket sat.
    assert await lease(10, 5, 9, t0 + 3600 * US) == [5, 0]
    # A lowered burst caps what was held.
    assert await lease(10, 5, 9, t0 + 7200 * US) == [5, 0]
    assert await lease(10, 50, 2, t0 + 7200 * US + 100_000) == [1, 0]
    assert await lease(10, 50, 9, t0 + 3 * 3600 * US) == [9, 0]
    assert await lease(10, 2, 9, t0 + 3 * 3600 * US) == [2, 0]  # 41 held, capped to 2
    # The key outlives the refill to full (here 0.2 s) by a second, no longer.
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        ttl_ms = await redis.pttl(key)
    finally:
        await redis.aclose()
    assert 1000 < ttl_ms <= 1200


async def test_the_script_uses_redis_time_by_default(
    settings: Settings, pipes: tuple[ScriptPipe, ScriptPipe]
) -> None:
    pipe = pipes[0]
    sha = pipe.register(LEASE)
    key = settings.key("rl", "test", uuid.uuid4().hex)
    assert await pipe.evalsha(sha, [key], [1, 2, 2, ""]) == [2, 0]
    granted, wait_us = await pipe.evalsha(sha, [key], [1, 2, 2, ""])
    assert granted == 0 and 0 < wait_us <= US


# --- two processes sharing a key ----------------------------------------------------------


async def test_two_limiters_share_one_budget(
    settings: Settings, pipes: tuple[ScriptPipe, ScriptPipe]
) -> None:
    """Both limiters ask for more than the budget every 1 ms, in alternating order, on one
    stepped clock (which they also hand Redis): what they admit together stays within
    burst + rate × t, plus one lease per limiter over any window; nearly all of the budget
    is used, and each gets a share."""
    rate, burst = 1_000, 50
    limited = _with(settings, usage_rate_limit=rate, usage_rate_burst=burst)
    clock = SteppedClock()
    limiters = [RateLimiter(limited, _returning(p), _no_pool, clock=clock) for p in pipes]
    tenant = _tenant()
    start = clock.now
    steps = 2_000
    admitted: list[list[float]] = [[], []]
    for step in range(steps):
        clock.now = start + step / 1_000
        for n in (0, 1) if step % 2 else (1, 0):  # who asks first alternates
            for _ in range(2):
                if await _admit(limiters[n].usage, tenant):
                    admitted[n].append(clock.now)
    elapsed = (steps - 1) / 1_000
    lease = lease_size(Limit(rate, burst))
    total = len(admitted[0]) + len(admitted[1])
    assert total <= burst + rate * elapsed  # from a fresh bucket: exact
    assert total >= burst + rate * elapsed - 2 * lease - 1  # the budget is not stranded
    assert min(len(a) for a in admitted) >= total / 4, "one limiter starved the other"
    times = sorted(admitted[0] + admitted[1])
    for window in (0.005, 0.05, 0.25, 1.0):
        busiest = max(
            bisect.bisect_right(times, t + window + 1e-9) - i for i, t in enumerate(times)
        )
        assert busiest <= burst + rate * window + 2 * lease, window


async def test_two_limiters_in_real_time_never_exceed_the_budget(
    settings: Settings, pipes: tuple[ScriptPipe, ScriptPipe]
) -> None:
    """On Redis's own clock: the admitted requests never exceed burst + rate × the time the
    run took (measured around it, so at least Redis's span)."""
    rate, burst = 400, 40
    limited = _with(settings, usage_rate_limit=rate, usage_rate_burst=burst)
    limiters = [RateLimiter(limited, _returning(p), _no_pool) for p in pipes]
    tenant = _tenant()
    counts = [0, 0]
    began = time.monotonic()

    async def hammer(n: int) -> None:
        while time.monotonic() - began < 1.0:
            if await _admit(limiters[n].usage, tenant):
                counts[n] += 1
            else:
                await asyncio.sleep(0)

    await asyncio.gather(*(hammer(n) for n in (0, 0, 1, 1)))
    elapsed = time.monotonic() - began
    assert burst <= sum(counts) <= burst + rate * elapsed


async def test_waiting_requests_share_one_lease(
    settings: Settings, pipes: tuple[ScriptPipe, ScriptPipe]
) -> None:
    limiter = RateLimiter(settings, lambda: pipes[0], _no_pool)
    tenant = _tenant()
    before = _sample("vinr_rate_limit_leases_total", Plane.USAGE)
    await asyncio.gather(*(limiter.usage.acquire(tenant) for _ in range(50)))
    assert _sample("vinr_rate_limit_leases_total", Plane.USAGE) - before == 1
    # the lease's rest (200 - 50) is admitted locally, without a coroutine
    assert all(limiter.usage.take(tenant.key_id) for _ in range(150))
    assert not limiter.usage.take(tenant.key_id)


async def test_a_refused_key_is_refused_locally_until_redis_said(
    settings: Settings, pipes: tuple[ScriptPipe, ScriptPipe]
) -> None:
    """Far over its limit, a key costs Redis one call per wait, not one per request; the
    refusal's Retry-After is the wait, rounded up."""
    clock = SteppedClock()
    limited = _with(settings, control_rate_limit=2, control_rate_burst=3)
    limiter = RateLimiter(limited, lambda: pipes[0], _no_pool, clock=clock)
    tenant = _tenant()
    for _ in range(3):
        await limiter.control.acquire(tenant)
    leases = _sample("vinr_rate_limit_leases_total", Plane.CONTROL)
    refused = _sample("vinr_rate_limited_total", Plane.CONTROL)
    for _ in range(100):
        with pytest.raises(RateLimited) as caught:
            await limiter.control.acquire(tenant)
    assert _sample("vinr_rate_limit_leases_total", Plane.CONTROL) - leases == 1
    assert _sample("vinr_rate_limited_total", Plane.CONTROL) - refused == 100
    assert caught.value.retry_after_s == 1
    assert "limit of 2 requests/s on the control plane (burst 3)" in caught.value.message
    clock.now += 0.5  # one token (1/2 s) is there again
    await limiter.control.acquire(tenant)
    with pytest.raises(RateLimited):
        await limiter.control.acquire(tenant)


async def test_leased_tokens_expire_unused(
    settings: Settings, pipes: tuple[ScriptPipe, ScriptPipe]
) -> None:
    clock = SteppedClock()
    limiter = RateLimiter(settings, lambda: pipes[0], _no_pool, clock=clock)
    tenant = _tenant()
    await limiter.usage.acquire(tenant)  # leases 200, takes 1
    assert limiter.usage.take(tenant.key_id)
    clock.now += LEASE_TTL_S
    assert not limiter.usage.take(tenant.key_id)


# --- limits per account -------------------------------------------------------------------


@pytest.fixture
async def account(pool: asyncpg.Pool) -> str:
    async with pool.acquire() as conn:
        account_id, _, _ = await create_account(conn, f"limits-{uuid.uuid4().hex[:6]}")
    return account_id


async def test_an_override_reaches_a_running_limiter_within_the_cache_time(
    settings: Settings, pool: asyncpg.Pool, account: str
) -> None:
    clock = SteppedClock()
    limiter = RateLimiter(settings, _no_pool, lambda: pool, clock=clock)
    assert await limiter.limit(account, Plane.USAGE) == Limit(20_000, 20_000)
    async with pool.acquire() as conn:
        await set_overrides(conn, account, {"usage_rate": 5, "control_burst": 9})
    clock.now += LIMITS_TTL_S - 0.01
    assert await limiter.limit(account, Plane.USAGE) == Limit(20_000, 20_000)  # cached
    clock.now += 0.01
    assert await limiter.limit(account, Plane.USAGE) == Limit(5, 20_000)
    assert await limiter.limit(account, Plane.CONTROL) == Limit(100, 9)


async def test_without_postgres_the_last_known_limits_hold(
    settings: Settings, pool: asyncpg.Pool, account: str
) -> None:
    clock = SteppedClock()
    reachable = [True]

    def maybe_pool() -> asyncpg.Pool:
        return pool if reachable[0] else _no_pool()

    async with pool.acquire() as conn:
        await set_overrides(conn, account, {"usage_rate": 7})
    limiter = RateLimiter(settings, _no_pool, maybe_pool, clock=clock)
    assert await limiter.limit(account, Plane.USAGE) == Limit(7, 20_000)
    reachable[0] = False
    clock.now += LIMITS_TTL_S
    assert await limiter.limit(account, Plane.USAGE) == Limit(7, 20_000)  # last known
    assert await limiter.limit("acct_never_seen", Plane.USAGE) == Limit(20_000, 20_000)
    reachable[0] = True
    async with pool.acquire() as conn:
        await set_overrides(conn, account, {"usage_rate": 8})
    clock.now += LIMITS_RETRY_S
    assert await limiter.limit(account, Plane.USAGE) == Limit(8, 20_000)


async def test_overrides_are_stored_per_value(pool: asyncpg.Pool, account: str) -> None:
    async with pool.acquire() as conn:
        assert await fetch_overrides(conn, account) == Overrides()
        assert await set_overrides(conn, account, {"control_rate": 3}) == Overrides(3)
        assert await set_overrides(conn, account, {"usage_burst": 4}) == Overrides(3, None, None, 4)
        assert await set_overrides(conn, account, {"usage_rate": 5}, reset=True) == Overrides(
            None, None, 5, None
        )
        assert await fetch_overrides(conn, account) == Overrides(None, None, 5, None)
        assert await set_overrides(conn, "acct_missing", {"usage_rate": 5}) is None
        with pytest.raises(asyncpg.CheckViolationError):
            await set_overrides(conn, account, {"usage_rate": 0})
        with pytest.raises(ValueError, match="unknown"):
            await set_overrides(conn, account, {"usage": 1})


def test_only_the_store_writes_sql_on_the_overrides() -> None:
    owner = ROOT / "domain/ratelimit/store.py"
    assert sql_tables(owner.read_text(), ["account_rate_limits"])
    others: list[Path] = [
        p
        for p in modules(
            ("vinr", "ingest", "control", "dashboard", "aggregator", "invoicer", "dispatcher")
        )
        + modules(("domain", "infra"))
        if p != owner
    ]
    offenders = [p for p in others if sql_tables(p.read_text(), ["account_rate_limits"])]
    assert not offenders, offenders


# --- Redis unreachable --------------------------------------------------------------------


def _unreachable_pipe() -> ScriptPipe:
    return ScriptPipe(f"redis://127.0.0.1:{free_port()}/0", timeout_s=1, connect_timeout_s=1)


def _counting(target: ScriptPipe) -> tuple[Callable[[], ScriptPipe], list[int]]:
    calls = [0]

    def get() -> ScriptPipe:
        calls[0] += 1
        return target

    return get, calls


async def test_without_redis_the_usage_plane_answers_503(settings: Settings) -> None:
    limiter = RateLimiter(settings, _unreachable_pipe, _no_pool)
    with pytest.raises(DependencyUnavailable) as caught:
        await limiter.usage.acquire(_tenant())
    assert caught.value.dependency == "redis" and caught.value.status == 503


async def test_without_redis_the_control_plane_fails_open_for_a_while(
    settings: Settings,
) -> None:
    clock = SteppedClock()
    pipe = _unreachable_pipe()
    get, calls = _counting(pipe)
    limiter = RateLimiter(settings, get, _no_pool, clock=clock)
    tenant = _tenant()
    unchecked = _sample("vinr_rate_limit_unchecked_total", Plane.CONTROL)
    for _ in range(5):
        await limiter.control.acquire(tenant)  # admitted, not raised
    assert calls[0] == 1, "Redis is tried once, then left alone for a while"
    assert _sample("vinr_rate_limit_unchecked_total", Plane.CONTROL) - unchecked == 5
    clock.now += UNCHECKED_S
    await limiter.control.acquire(tenant)
    assert calls[0] == 2
    await pipe.close()
