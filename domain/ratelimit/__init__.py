"""Per-key rate limits: a token bucket per API key and plane in Redis, leased in chunks so
the usage hot path admits a request with a local decrement.

Modules: ``rules`` (planes, limits, lease size, the local bucket, the bounds — no I/O),
``script`` (the Lua token bucket), ``store`` (per-account overrides in Postgres),
``limiter`` (``RateLimiter``: local buckets, leases, the cached limits, the fail-open rule).
"""

from domain.ratelimit.limiter import PlaneLimiter, RateLimiter
from domain.ratelimit.rules import Limit, Overrides, Plane, limits_in_effect

__all__ = ["Limit", "Overrides", "Plane", "PlaneLimiter", "RateLimiter", "limits_in_effect"]
