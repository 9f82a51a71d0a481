"""Meter usage written straight into Postgres, as the aggregator would write it: ledger rows
(``meter_events``) and, for the counted events, their minute buckets (``meter_buckets``)
folded by ``domain.meters.fold_events`` — for tests of what the API reads from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from domain.meters import BUCKET_S, Number, fold_events
from domain.meterusage import SEQ_INDEX_SPAN


@dataclass(frozen=True)
class Ev:
    """One meter event: counted unless ``cancelled`` or ``rejected``."""

    identifier: str
    ts: int
    value: Number
    seq: int = 0
    cancelled: bool = False
    rejected: str | None = None

    @property
    def counted(self) -> bool:
        return not self.cancelled and self.rejected is None


async def keys(pool: asyncpg.Pool, meter_id: str, customer_id: str) -> tuple[int, int]:
    """(meter_pk, customer_pk) of a meter and a customer of the meter's account and mode."""
    row = await pool.fetchrow(
        "SELECT m.pk AS m, c.pk AS c FROM meters m JOIN customers c ON c.account_id ="
        " m.account_id AND c.livemode = m.livemode AND c.id = $2 WHERE m.id = $1",
        meter_id,
        customer_id,
    )
    assert row is not None, (meter_id, customer_id)
    return int(row["m"]), int(row["c"])


async def write_events(
    pool: asyncpg.Pool, meter_id: str, customer_id: str, events: list[Ev]
) -> None:
    """The events' ledger rows, and the buckets of the minutes they count in."""
    meter_pk, customer_pk = await keys(pool, meter_id, customer_id)
    minutes: set[int] = set()
    async with pool.acquire() as conn, conn.transaction():
        for e in events:
            await conn.execute(
                "INSERT INTO meter_events (meter_pk, identifier, customer_pk, ts, value,"
                " accepted_at, kafka_partition, kafka_offset, kafka_index, cancelled_at, rejected)"
                " VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $8, $9, $10)",
                meter_pk,
                e.identifier,
                customer_pk,
                e.ts,
                e.value,
                e.ts + 1,
                e.seq // SEQ_INDEX_SPAN,
                e.seq % SEQ_INDEX_SPAN,
                e.ts + 2 if e.cancelled else None,
                e.rejected,
            )
            if e.counted:
                minutes.add(e.ts - e.ts % BUCKET_S)
        for minute in sorted(minutes):
            await _fold_bucket(conn, meter_pk, customer_pk, minute)


async def _fold_bucket(
    conn: asyncpg.Connection[Any], meter_pk: int, customer_pk: int, minute: int
) -> None:
    """The minute's bucket as ``fold_events`` makes it of the minute's counted events."""
    old = await conn.fetch(
        "SELECT ts, value, kafka_offset, kafka_index FROM meter_events WHERE meter_pk = $1"
        " AND customer_pk = $2 AND ts >= $3 AND ts < $3 + 60 AND value IS NOT NULL"
        " AND cancelled_at IS NULL AND rejected IS NULL",
        meter_pk,
        customer_pk,
        minute,
    )
    stats = fold_events(
        (r["ts"], r["value"], r["kafka_offset"] * SEQ_INDEX_SPAN + r["kafka_index"]) for r in old
    )
    await conn.execute(
        "INSERT INTO meter_buckets (meter_pk, customer_pk, minute, total, events, max, last_ts,"
        " last_value, last_seq, updated) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)"
        " ON CONFLICT (meter_pk, customer_pk, minute) DO UPDATE SET total = excluded.total,"
        " events = excluded.events, max = excluded.max, last_ts = excluded.last_ts,"
        " last_value = excluded.last_value, last_seq = excluded.last_seq",
        meter_pk,
        customer_pk,
        minute,
        stats.total,
        stats.events,
        stats.max,
        stats.last_ts,
        stats.last_value,
        stats.last_seq,
    )


async def close_until(pool: asyncpg.Pool, meter_id: str, customer_id: str, until: int) -> None:
    """The customer's usage of the meter invoiced up to ``until`` (closing and closed)."""
    meter_pk, customer_pk = await keys(pool, meter_id, customer_id)
    await pool.execute(
        "INSERT INTO meter_closes (meter_pk, customer_pk, closing_until, closed_until, updated)"
        " VALUES ($1, $2, $3, $3, 0) ON CONFLICT (meter_pk, customer_pk) DO UPDATE"
        " SET closing_until = $3, closed_until = $3",
        meter_pk,
        customer_pk,
        until,
    )
