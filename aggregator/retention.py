"""Retention: closed windows shed their per-timestamp points and their ledger rows.

What grows with traffic is the ledger (one row per request) and ``usage_points`` (one row
per item and timestamp). Both matter only while a window can still change:

* points feed ``set`` and ``max`` for an open window;
* ledger rows dedupe retries and let ``vinr replay`` rebuild an open window.

Once a window is closed by its finalized invoice it never changes again: late requests for
it are dead-lettered (the dead letter keeps their records). So once a window has been closed
for longer than the idempotency TTL (a client may retry a request that long), its points
and ledger rows are deleted. The window row itself stays: one row per item and period, like
an invoice line, read by usage summaries and by ``last_ever`` for the next period.

Row-level deletes keyed by the closed window, rather than table partitions: periods are
anchored per subscription, so no time range of rows ever closes all at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from domain.clock import now_s
from infra.progress import Report

__all__ = ["PurgeResult", "purge_closed_windows"]

log = logging.getLogger(__name__)

_LOCK = 0x76696E73  # one purger at a time across aggregators


@dataclass(slots=True)
class PurgeResult:
    windows: int = 0
    points: int = 0
    ledger: int = 0


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


_DUE = "invoice_id IS NOT NULL AND purged_at IS NULL AND closed_at < $1"


async def purge_closed_windows(
    pool: asyncpg.Pool,
    *,
    ledger_ttl_s: int,
    now: int | None = None,
    batch: int = 500,
    progress: Report | None = None,
) -> PurgeResult:
    """Purge windows closed more than ``ledger_ttl_s`` ago, ``batch`` windows per transaction.

    Safe to run beside aggregators and other purgers (an advisory lock lets one through).
    With ``progress``, the due windows are counted first and it hears (windows purged, due
    in all) after each transaction.
    """
    cutoff = (now_s() if now is None else now) - ledger_ttl_s
    result = PurgeResult()
    due = 0
    if progress is not None:
        due = int(await pool.fetchval(f"SELECT count(*) FROM usage_windows WHERE {_DUE}", cutoff))
        progress(0, due)
    while True:
        async with pool.acquire() as conn, conn.transaction():
            if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK):
                return result
            rows = await conn.fetch(
                "SELECT item_pk, period_start, period_end FROM usage_windows"
                f" WHERE {_DUE} ORDER BY closed_at LIMIT $2 FOR UPDATE",
                cutoff,
                batch,
            )
            if not rows:
                break
            items = [r["item_pk"] for r in rows]
            starts = [r["period_start"] for r in rows]
            ends = [r["period_end"] for r in rows]
            result.points += _count(
                await conn.execute(
                    "DELETE FROM usage_points p USING unnest($1::bigint[], $2::bigint[],"
                    " $3::bigint[]) AS w(i, s, e) WHERE p.item_pk = w.i AND p.ts >= w.s"
                    " AND p.ts < w.e",
                    items,
                    starts,
                    ends,
                )
            )
            result.ledger += _count(
                await conn.execute(
                    "DELETE FROM usage_ledger l USING unnest($1::bigint[], $2::bigint[]) AS w(i, s)"
                    " WHERE l.item_pk = w.i AND l.period_start = w.s",
                    items,
                    starts,
                )
            )
            await conn.execute(
                "UPDATE usage_windows w SET purged_at = $3"
                " FROM unnest($1::bigint[], $2::bigint[]) AS k(i, s)"
                " WHERE w.item_pk = k.i AND w.period_start = k.s",
                items,
                starts,
                now_s(),
            )
            result.windows += len(rows)
        if progress is not None:
            # Windows falling due meanwhile are purged too: the total grows with them.
            due = max(due, result.windows)
            progress(result.windows, due)
        if len(rows) < batch:
            break
    if result.windows:
        log.info(
            "retention: purged %d closed window(s): %d point(s), %d ledger row(s)",
            result.windows,
            result.points,
            result.ledger,
        )
    return result
