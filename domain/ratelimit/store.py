"""Per-account rate-limit overrides in Postgres (``account_rate_limits``): the table's only
SQL. Read by the API processes when they lease tokens (cached, ``domain.ratelimit.limiter``),
written by ``vinr account limits``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from domain.clock import now_s
from domain.ratelimit.rules import Overrides

__all__ = ["FIELDS", "fetch_overrides", "set_overrides"]

FIELDS = ("control_rate", "control_burst", "usage_rate", "usage_burst")

_SELECT = (
    "SELECT control_rate, control_burst, usage_rate, usage_burst"
    " FROM account_rate_limits WHERE account_id = $1"
)

# Only for an existing account (the foreign key refuses any other). Without reset a value
# not given keeps what was stored; with reset it goes back to the default (NULL).
_UPSERT = """
INSERT INTO account_rate_limits
    (account_id, control_rate, control_burst, usage_rate, usage_burst, updated)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (account_id) DO UPDATE SET
    control_rate = CASE WHEN $7 THEN EXCLUDED.control_rate
        ELSE COALESCE(EXCLUDED.control_rate, account_rate_limits.control_rate) END,
    control_burst = CASE WHEN $7 THEN EXCLUDED.control_burst
        ELSE COALESCE(EXCLUDED.control_burst, account_rate_limits.control_burst) END,
    usage_rate = CASE WHEN $7 THEN EXCLUDED.usage_rate
        ELSE COALESCE(EXCLUDED.usage_rate, account_rate_limits.usage_rate) END,
    usage_burst = CASE WHEN $7 THEN EXCLUDED.usage_burst
        ELSE COALESCE(EXCLUDED.usage_burst, account_rate_limits.usage_burst) END,
    updated = EXCLUDED.updated
RETURNING control_rate, control_burst, usage_rate, usage_burst
"""


def _overrides(row: Mapping[str, Any] | None) -> Overrides:
    return Overrides() if row is None else Overrides(*(row[f] for f in FIELDS))


async def fetch_overrides(db: asyncpg.Pool | asyncpg.Connection[Any], account_id: str) -> Overrides:
    """The account's overrides (none stored: every value default). Raises asyncpg/OSError
    errors when Postgres is unavailable."""
    return _overrides(await db.fetchrow(_SELECT, account_id))


async def set_overrides(
    conn: asyncpg.Connection[Any],
    account_id: str,
    values: Mapping[str, int],
    *,
    reset: bool = False,
) -> Overrides | None:
    """Store ``values`` (keys from ``FIELDS``; each 1 … ``MAX_RATE_LIMIT``, checked by the
    caller and by the table) as the account's overrides; ``reset`` first returns every value
    to its default. None when the account does not exist."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown rate-limit fields: {', '.join(sorted(unknown))}")
    try:
        row = await conn.fetchrow(
            _UPSERT, account_id, *(values.get(f) for f in FIELDS), now_s(), reset
        )
    except asyncpg.ForeignKeyViolationError:
        return None
    return _overrides(row)
