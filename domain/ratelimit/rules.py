"""The rate-limit rules, without I/O: the two planes, a limit, which limit is in effect for
an account, how many tokens a process leases at once, and a process's local share.

A key's budget on a plane is a token bucket (``rate`` tokens a second, at most ``burst``
held) that lives in Redis (``domain.ratelimit.script``). A process does not ask Redis per
request: it leases ``lease_size`` tokens at a time into a ``LocalBucket`` and admits
requests from it with a decrement. Leased tokens that are not used within ``LEASE_TTL_S``
are dropped, never returned.

Bounds, with N processes serving one key: Redis never grants more than ``burst + rate × t``
over any t seconds, and a process admits only tokens Redis granted it, so the requests
admitted in any window of t seconds are at most ``burst + rate × t + N × lease_size`` (the
last term: tokens each process held when the window opened, one lease at most). From a
fresh bucket (nothing held) the bound is exact: ``burst + rate × t``. The other way, a
key can be refused while up to ``(N − 1) × lease_size`` granted tokens sit unused in other
processes, for at most ``LEASE_TTL_S``.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from enum import StrEnum

from infra.errors import RateLimited
from infra.settings import MAX_RATE_LIMIT, Settings

__all__ = [
    "LEASE_TTL_S",
    "LEASE_WINDOW_S",
    "MAX_RATE_LIMIT",
    "Limit",
    "LocalBucket",
    "Overrides",
    "Plane",
    "defaults",
    "lease_size",
    "limits_in_effect",
    "refusal",
    "retry_after_s",
]

# A lease is this much of a second's rate (≥ 1 token): 200 tokens at 20,000/s, 1 at 100/s.
LEASE_WINDOW_S = 0.01
# Leased tokens unused after this long are dropped, so an idle process does not keep a
# share of the budget it no longer uses.
LEASE_TTL_S = 1.0


class Plane(StrEnum):
    """Every authenticated route belongs to one plane, with its own budget per key."""

    CONTROL = "control"  # everything except the usage endpoints
    USAGE = "usage"  # POST /v1/usage_records and /v1/usage_records/batch

    @property
    def phrase(self) -> str:
        return "the control plane" if self is Plane.CONTROL else "usage ingestion"


@dataclass(frozen=True, slots=True)
class Limit:
    """``rate`` requests a second, ``burst`` at once after a quiet spell."""

    rate: int
    burst: int


@dataclass(frozen=True, slots=True)
class Overrides:
    """An account's own limits; ``None`` keeps the deployment's default for that value."""

    control_rate: int | None = None
    control_burst: int | None = None
    usage_rate: int | None = None
    usage_burst: int | None = None

    def value(self, plane: Plane, what: str) -> int | None:
        value: int | None = getattr(self, f"{plane.value}_{what}")
        return value


def defaults(settings: Settings) -> dict[Plane, Limit]:
    return {
        Plane.CONTROL: Limit(settings.control_rate_limit, settings.control_rate_burst),
        Plane.USAGE: Limit(settings.usage_rate_limit, settings.usage_rate_burst),
    }


def limits_in_effect(settings: Settings, overrides: Overrides) -> dict[Plane, Limit]:
    """Each plane's limit for an account: its override where set, the default elsewhere."""
    base = defaults(settings)
    return {
        plane: Limit(
            overrides.value(plane, "rate") or limit.rate,
            overrides.value(plane, "burst") or limit.burst,
        )
        for plane, limit in base.items()
    }


def lease_size(limit: Limit) -> int:
    """Tokens a process asks Redis for at once: ``LEASE_WINDOW_S`` of the rate, at least
    one, never more than the burst (the bucket cannot hold more)."""
    return max(1, min(limit.burst, math.ceil(limit.rate * LEASE_WINDOW_S)))


def retry_after_s(wait_s: float) -> int:
    """``Retry-After``: whole seconds until a token is there, at least 1 (the header has no
    fractions, and 0 would invite an immediate retry)."""
    return max(1, math.ceil(wait_s))


def refusal(plane: Plane, limit: Limit, wait_s: float) -> RateLimited:
    retry = retry_after_s(wait_s)
    return RateLimited(
        f"this key exceeded its limit of {limit.rate:,} requests/s on {plane.phrase}"
        f" (burst {limit.burst:,}); retry after {retry} s",
        retry_after_s=retry,
    )


class LocalBucket:
    """One process's share of a key's budget on one plane: tokens leased from Redis, until
    they expire, and how long Redis said to wait when it had none. Times are the caller's
    monotonic clock, in seconds."""

    __slots__ = ("blocked_until", "expires", "leasing", "limit", "tokens")

    def __init__(self, limit: Limit) -> None:
        self.tokens = 0
        self.expires = 0.0
        self.blocked_until = 0.0
        self.limit = limit  # the limit of the last lease, for the refusal's message
        self.leasing: asyncio.Future[None] | None = None  # the lease in flight, if any

    def take(self, now: float) -> bool:
        """Admit one request from the leased tokens: the hot path, a decrement."""
        if self.tokens and self.expires > now:
            self.tokens -= 1
            return True
        return False

    def fill(self, granted: int, now: float) -> None:
        """Tokens Redis just granted; whatever was left of an earlier lease had expired."""
        self.tokens = granted
        self.expires = now + LEASE_TTL_S

    def block(self, wait_s: float, now: float) -> None:
        """Redis had no token: refuse locally, without asking again, for ``wait_s``."""
        self.tokens = 0
        self.blocked_until = now + wait_s

    def blocked_for(self, now: float) -> float:
        """Seconds this process still refuses without asking Redis (≤ 0: not blocked)."""
        return self.blocked_until - now

    def idle(self, now: float) -> bool:
        """Nothing held, nothing pending: the bucket can be forgotten."""
        return self.leasing is None and self.expires <= now and self.blocked_until <= now
