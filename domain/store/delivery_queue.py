"""Storage of the dispatcher's delivery queue: claiming due deliveries under a lease and
writing each attempt's outcome, on ``webhook_deliveries``, ``webhook_attempts`` and the
status of ``webhook_endpoints`` (the rest of the family is in ``domain.store.webhooks``).

``CLAIM`` takes due deliveries with ``FOR UPDATE SKIP LOCKED`` so several dispatchers share
the work, pushing ``next_attempt_at`` past the lease and counting the attempt. An outcome
is written only while ``attempts`` still equals the number its claim gave out (``FENCE``),
so a late result from an expired lease is dropped.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.store.webhooks import Db

__all__ = [
    "CLAIM",
    "FENCE",
    "GAUGES",
    "cancel_claimed",
    "claim",
    "endpoint_recovered",
    "gauges",
    "mark_delivered",
    "mark_endpoint_failing",
    "mark_failed",
    "record_attempt",
    "schedule_retry",
]

CLAIM = """
UPDATE webhook_deliveries d SET next_attempt_at = $2 + $3, attempts = d.attempts + 1,
       first_attempt_at = coalesce(d.first_attempt_at, $2::bigint)
FROM (SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $2
      ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED) due,
     events e, webhook_endpoints w
WHERE d.id = due.id AND e.id = d.event_id AND w.id = d.endpoint_id
RETURNING d.id, d.attempts, d.first_attempt_at, e.id AS event_id, e.type, e.data, e.created,
          e.livemode, e.account_id, w.id AS endpoint_id, w.url, w.status AS endpoint_status,
          w.secret, w.previous_secret, w.previous_secret_expires
"""

# Outcomes are fenced on the attempt number the claim gave out.
FENCE = "WHERE id = $1 AND attempts = $2 AND status = 'pending'"

GAUGES = """
SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_endpoints WHERE status = 'failing') AS failing,
       (SELECT greatest(0, $1 - min(next_attempt_at)) FROM webhook_deliveries
         WHERE status = 'pending' AND next_attempt_at <= $1) AS oldest_due_s
"""


async def claim(db: Db, limit: int, now: float, lease_s: float) -> list[asyncpg.Record]:
    """Claim up to ``limit`` due deliveries, skipping those another dispatcher holds, and
    lease them for ``lease_s``; each comes with its event and endpoint."""
    rows: list[asyncpg.Record] = await db.fetch(CLAIM, limit, now, lease_s)
    return rows


async def gauges(db: Db, now: float) -> asyncpg.Record:
    """Counts of pending deliveries and failing endpoints, and how long the most overdue
    pending delivery has been due at ``now`` (0 when none is): the queue's age, which
    grows when the dispatchers cannot keep up."""
    row: asyncpg.Record = await db.fetchrow(GAUGES, now)
    return row


async def cancel_claimed(db: Db, delivery_id: str, attempt: int) -> None:
    """Cancel a claimed delivery whose endpoint was disabled meanwhile (fenced)."""
    await db.execute(
        "UPDATE webhook_deliveries SET status = 'canceled',"
        " last_error = 'endpoint disabled' " + FENCE,
        delivery_id,
        attempt,
    )


async def record_attempt(
    conn: asyncpg.Connection[Any],
    delivery_id: str,
    attempt: int,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    created: int,
) -> None:
    """Log one attempt; a repeat of the same attempt number is ignored."""
    await conn.execute(
        "INSERT INTO webhook_attempts (delivery_id, attempt, status_code, error,"
        " duration_ms, created) VALUES ($1, $2, $3, $4, $5, $6)"
        " ON CONFLICT DO NOTHING",
        delivery_id,
        attempt,
        status_code,
        error,
        duration_ms,
        created,
    )


async def mark_delivered(
    conn: asyncpg.Connection[Any],
    delivery_id: str,
    attempt: int,
    delivered_at: int,
    status_code: int | None,
) -> None:
    """The attempt succeeded (fenced)."""
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $3,"
        " last_status_code = $4, last_error = NULL " + FENCE,
        delivery_id,
        attempt,
        delivered_at,
        status_code,
    )


async def schedule_retry(
    conn: asyncpg.Connection[Any],
    delivery_id: str,
    attempt: int,
    next_attempt_at: float,
    status_code: int | None,
    error: str | None,
) -> None:
    """The attempt failed; try again at ``next_attempt_at`` (fenced)."""
    await conn.execute(
        "UPDATE webhook_deliveries SET next_attempt_at = $3, last_status_code = $4,"
        " last_error = $5 " + FENCE,
        delivery_id,
        attempt,
        next_attempt_at,
        status_code,
        error,
    )


async def mark_failed(
    conn: asyncpg.Connection[Any],
    delivery_id: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
) -> bool:
    """Give the delivery up (fenced); True if this call did."""
    given_up = await conn.fetchval(
        "UPDATE webhook_deliveries SET status = 'failed', last_status_code = $3,"
        " last_error = $4 " + FENCE + " RETURNING id",
        delivery_id,
        attempt,
        status_code,
        error,
    )
    return given_up is not None


async def endpoint_recovered(conn: asyncpg.Connection[Any], endpoint_id: str) -> None:
    """A failing endpoint that accepted a delivery is enabled again."""
    await conn.execute(
        "UPDATE webhook_endpoints SET status = 'enabled' WHERE id = $1 AND status = 'failing'",
        endpoint_id,
    )


async def mark_endpoint_failing(
    conn: asyncpg.Connection[Any], endpoint_id: str
) -> asyncpg.Record | None:
    """Mark an enabled endpoint failing; its row, or None if it was not enabled."""
    return await conn.fetchrow(
        "UPDATE webhook_endpoints SET status = 'failing' WHERE id = $1"
        " AND status = 'enabled' RETURNING *",
        endpoint_id,
    )
