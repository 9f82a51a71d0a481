"""Rebuilding open windows from the ledger (``vinr replay``).

The ledger holds every request's records and its Kafka position, so an open window's
usage map — and from it ``total``, ``max`` and ``last_*`` — can be recomputed without the
topic (whose retention may be far shorter than a billing period). Requests are folded in
arrival order: Kafka order within the item's partition (an item's messages are keyed to
one partition; if the topic was repartitioned mid-period, partition then offset order is
used, which only matters for records at the very same timestamp).

Each window is rebuilt in its own transaction holding the window's row lock, the same lock
an aggregator batch takes, so a rebuild can run beside live aggregators: a batch either
committed before the rebuild read the ledger (and is in it) or folds its delta onto the
rebuilt state afterwards. Closed windows are never touched (their invoice is final), and
requests whose records are invalid are skipped, as the aggregator dead-letters them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from domain.fold import InvalidRecords, Op, WindowState, collapse, merge_ops, window_state
from infra.progress import Report, ignore

__all__ = ["Rebuild", "rebuild_window", "rebuild_windows", "state_of"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rebuild:
    item_pk: int
    period_start: int
    before: WindowState
    after: WindowState
    requests: int
    skipped: int  # requests without stored records (older ledger rows) or invalid
    points_differ: bool  # the stored usage map differs from the ledger's

    @property
    def changed(self) -> bool:
        return self.before != self.after or self.points_differ


def state_of(usage: dict[int, int], records: int) -> WindowState:
    """The window a usage map (timestamp → quantity) folds to."""
    if not usage:
        return WindowState(records=records)
    last_ts = max(usage)
    return WindowState(
        total=sum(usage.values()),
        max=max(0, *usage.values()),
        last_ts=last_ts,
        last_quantity=usage[last_ts],
        records=records,
    )


async def rebuild_window(
    conn: asyncpg.Connection[Any], item_pk: int, period_start: int, *, write: bool = True
) -> Rebuild | None:
    """Recompute one open window from the ledger; None if it is closed or absent."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM usage_windows WHERE item_pk = $1 AND period_start = $2"
            " AND invoice_id IS NULL FOR UPDATE",
            item_pk,
            period_start,
        )
        if row is None:
            return None
        ledger = await conn.fetch(
            "SELECT payload, records FROM usage_ledger WHERE item_pk = $1 AND period_start = $2"
            " ORDER BY kafka_partition, kafka_offset, kafka_index",
            item_pk,
            period_start,
        )
        ops: dict[int, Op] = {}
        records = skipped = 0
        for entry in ledger:
            if entry["payload"] is None:
                skipped += 1
                continue
            try:
                merge_ops(
                    ops, collapse(orjson.loads(entry["payload"]), period_start, row["period_end"])
                )
            except (InvalidRecords, orjson.JSONDecodeError):
                skipped += 1
                continue
            records += entry["records"]
        usage = {ts: op.value for ts, op in ops.items()}
        stored = {
            r["ts"]: int(r["quantity"])
            for r in await conn.fetch(
                "SELECT ts, quantity FROM usage_points WHERE item_pk = $1 AND ts >= $2 AND ts < $3",
                item_pk,
                period_start,
                row["period_end"],
            )
        }
        result = Rebuild(
            item_pk,
            period_start,
            window_state(row),
            state_of(usage, records),
            len(ledger),
            skipped,
            stored != usage,
        )
        if write and result.changed:
            after = result.after
            await conn.execute(
                "DELETE FROM usage_points WHERE item_pk = $1 AND ts >= $2 AND ts < $3",
                item_pk,
                period_start,
                row["period_end"],
            )
            await conn.execute(
                "INSERT INTO usage_points (item_pk, ts, quantity)"
                " SELECT $1, t, q FROM unnest($2::bigint[], $3::numeric[]) AS v(t, q)",
                item_pk,
                list(usage),
                list(usage.values()),
            )
            await conn.execute(
                "UPDATE usage_windows SET total = $3, max = $4, last_ts = $5,"
                " last_quantity = $6, records = $7 WHERE item_pk = $1 AND period_start = $2",
                item_pk,
                period_start,
                after.total,
                after.max,
                after.last_ts,
                after.last_quantity,
                after.records,
            )
            log.warning(
                "rebuilt window (item %d, period %d): %s -> %s",
                item_pk,
                period_start,
                result.before,
                after,
            )
        return result


async def rebuild_windows(
    pool: asyncpg.Pool,
    *,
    item_pks: list[int] | None = None,
    write: bool = True,
    progress: Report = ignore,
) -> list[Rebuild]:
    """Rebuild every open window (of ``item_pks``, if given), one transaction each;
    ``progress`` hears (windows done, windows in all) after each."""
    keys = await pool.fetch(
        "SELECT item_pk, period_start FROM usage_windows WHERE invoice_id IS NULL"
        " AND ($1::bigint[] IS NULL OR item_pk = ANY($1)) ORDER BY item_pk, period_start",
        item_pks,
    )
    out: list[Rebuild] = []
    progress(0, len(keys))
    async with pool.acquire() as conn:
        for done, key in enumerate(keys, 1):
            rebuilt = await rebuild_window(conn, key["item_pk"], key["period_start"], write=write)
            if rebuilt is not None:
                out.append(rebuilt)
            progress(done, len(keys))
    return out
