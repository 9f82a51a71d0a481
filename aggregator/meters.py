"""Meter events in Postgres, written exactly once per (meter, identifier): every statement
the aggregator runs on ``meter_events`` and ``meter_buckets``.

Inside the batch's one transaction (``aggregator/store.py``):

1. the events of the partitions that passed the fence go into the ledger ``meter_events``
   with ``ON CONFLICT DO NOTHING`` — in the fence's own statement (``ledger_ctes``), so a
   batch with meter events costs no round trip for it; only new identifiers count (the
   unit of dedupe for meter events is the event, whatever Redis forgot). The same
   statement reads the customers' invoiced boundaries (``meter_closes``, ``FOR SHARE``, so
   a finalize that moves ``closed_until`` waits for this batch or this batch sees its new
   boundary): an event before ``closed_until`` is stored with ``rejected =
   'period_invoiced'`` and not counted; a malformed event is stored with ``rejected =
   'invalid_event'`` when its meter and identifier are usable;
2. only when some identifiers were already there: an identifier held by a tombstone (a
   cancel that came first: value NULL, ``cancelled_at`` set) gets the event's details
   (customer, timestamp, value, acceptance time, Kafka position) and stays not counted
   (``fill_tombstones``);
3. the counted events' bucket deltas are added to ``meter_buckets`` (``write_buckets``):
   totals and counts add up, ``max`` is the greatest, ``last`` is the later by (timestamp,
   arrival position) — the batch comes later in arrival than anything stored, so at an
   equal timestamp its event wins when its position is higher. The same statement
   advances the stored offsets when the usage part did not, and returns the alerts to
   evaluate (``domain.alerting.CANDIDATES``): so a batch of meter events is ``BEGIN``,
   fence + both ledgers, buckets + offsets, ``COMMIT``.

Buckets are upserted in key order: a cancel locks one bucket (``domain.meterusage``), and
two writers taking locks in one order never deadlock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from aggregator.batch import BucketKey, MeterEntry, bucket_deltas
from domain.alerting import candidates_sql
from domain.clock import now_s
from domain.meters import Number, Stats

__all__ = [
    "LEDGER_COLUMNS",
    "MeterOutcome",
    "fill_tombstones",
    "ledger_args",
    "ledger_ctes",
    "outcome_of",
    "write_buckets",
]

_INT64 = 2**63 - 1

# What the fence statement returns for meter events (see ``ledger_ctes``): the inserted
# (meter, identifier) pairs and whether each counts — only when some well-formed event was
# not counted (otherwise nothing comes back but NULLs).
LEDGER_COLUMNS = "".join(
    f", CASE WHEN (SELECT short FROM ms) THEN coalesce((SELECT array_agg({expr}"
    f" ORDER BY meter_pk, identifier) FROM mi), '{{}}') END AS {name}"
    for expr, name in (
        ("meter_pk", "m_pks"),
        ("identifier", "m_ids"),
        ("rejected IS NULL", "m_counted"),
    )
)


def _value_type(values: Sequence[Number | None]) -> str:
    """bigint[] travels much faster than numeric[]: numeric only for decimal values."""
    return "bigint" if all(v is None or type(v) is int for v in values) else "numeric"


def _numeric_type(values: Sequence[Number | None]) -> str:
    return (
        "bigint"
        if all(v is None or (type(v) is int and -_INT64 <= v <= _INT64) for v in values)
        else "numeric"
    )


def _literal(values: Sequence[Number | None]) -> str:
    """An array literal of numbers (``{1,2.5,NULL}``). Sent as text and cast in SQL: the
    driver's binary encoding checks every element's type, which costs more than the insert
    of the row itself once there are ten columns."""
    if None in values:
        return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"
    return "{" + ",".join(map(str, values)) + "}"


def ledger_ctes(n: int, events: Sequence[MeterEntry]) -> str:
    """The meter-event CTEs joined to the fence statement (which defines ``ok``, the
    partitions that passed); parameters from ``$n`` (``ledger_args``)."""
    kind = _value_type([e.value for e in events])
    return (
        f", mr AS (SELECT * FROM unnest(${n}::text::bigint[], ${n + 1}::text[],"
        f" ${n + 2}::text::bigint[], ${n + 3}::text::bigint[], ${n + 4}::text::{kind}[],"
        f" ${n + 5}::text::bigint[], ${n + 6}::text::int[], ${n + 7}::text::bigint[],"
        f" ${n + 8}::text::int[], ${n + 9}::text::text[])"
        " AS m(meter_pk, identifier, customer_pk, ts, value, accepted_at, kafka_partition,"
        " kafka_offset, kafka_index, rejected)"
        " WHERE m.kafka_partition IN (SELECT partition FROM ok)),"
        " cl AS (SELECT c.meter_pk, c.customer_pk, c.closed_until FROM meter_closes c"
        " WHERE (c.meter_pk, c.customer_pk) IN (SELECT meter_pk, customer_pk FROM mr)"
        " AND c.closed_until > 0 ORDER BY c.meter_pk, c.customer_pk FOR SHARE),"
        " mi AS (INSERT INTO meter_events (meter_pk, identifier, customer_pk, ts, value,"
        " accepted_at, kafka_partition, kafka_offset, kafka_index, rejected)"
        " SELECT mr.meter_pk, mr.identifier, mr.customer_pk, mr.ts, mr.value, mr.accepted_at,"
        " mr.kafka_partition, mr.kafka_offset, mr.kafka_index,"
        " coalesce(mr.rejected, CASE WHEN mr.ts < cl.closed_until THEN 'period_invoiced' END)"
        " FROM mr LEFT JOIN cl ON cl.meter_pk = mr.meter_pk AND cl.customer_pk = mr.customer_pk"
        " ON CONFLICT DO NOTHING RETURNING meter_pk, identifier, rejected),"
        " ms AS (SELECT (SELECT count(*) FROM mi WHERE rejected IS NULL)"
        " < (SELECT count(*) FROM mr WHERE rejected IS NULL) AS short)"
    )


def ledger_args(events: Sequence[MeterEntry]) -> list[Any]:
    """The events' columns for ``ledger_ctes``. A malformed event without a usable meter
    or identifier is not written (it cannot be attributed nor stored); the others go in,
    malformed ones rejected."""
    rows = [e for e in events if e.storable]
    return [
        _literal([e.meter_pk for e in rows]),
        [e.identifier for e in rows],
        _literal([e.customer_pk for e in rows]),
        _literal([e.ts for e in rows]),
        _literal([e.value for e in rows]),
        _literal([e.accepted_at for e in rows]),
        _literal([e.partition for e in rows]),
        _literal([e.offset for e in rows]),
        _literal([e.index for e in rows]),
        "{" + ",".join("NULL" if e.error is None else "invalid_event" for e in rows) + "}",
    ]


@dataclass(slots=True)
class MeterOutcome:
    """What the ledger said about a batch's meter events (of the partitions that passed)."""

    events: list[MeterEntry]  # this transaction's events, malformed included
    counted: list[MeterEntry]
    conflicts: list[MeterEntry]  # well-formed events whose identifier was already there
    rejected: dict[str, int] = field(default_factory=dict)  # reason → events
    buckets: dict[BucketKey, Stats] = field(default_factory=dict)


def outcome_of(
    row: asyncpg.Record, events: list[MeterEntry], buckets: dict[BucketKey, Stats]
) -> MeterOutcome:
    """Read the fence statement's meter columns. ``buckets`` are the events' deltas assuming
    every well-formed event counts; the buckets of those that did not are rebuilt."""
    invalid = sum(1 for e in events if not e.counts)
    out = MeterOutcome(events, [], [])
    if invalid:
        out.rejected["invalid_event"] = invalid
    if row["m_pks"] is None:  # every well-formed event was new and counted
        out.counted = [e for e in events if e.counts]
        out.buckets = buckets
        return out
    inserted = dict(
        zip(zip(row["m_pks"], row["m_ids"], strict=True), row["m_counted"], strict=True)
    )
    stale: set[BucketKey] = set()
    for e in events:
        if not e.counts:
            continue
        state = inserted.get(e.key)
        if state is True:
            out.counted.append(e)
            continue
        stale.add(e.bucket)
        if state is None:
            out.conflicts.append(e)
        else:
            out.rejected["period_invoiced"] = out.rejected.get("period_invoiced", 0) + 1
    rebuilt = bucket_deltas(e for e in out.counted if e.bucket in stale)
    out.buckets = {k: s for k, s in buckets.items() if k not in stale}
    out.buckets.update(rebuilt)
    return out


async def fill_tombstones(conn: asyncpg.Connection[Any], conflicts: Sequence[MeterEntry]) -> int:
    """Give the tombstones among ``conflicts`` their event's details (never counted); the
    number filled. Identifiers held by an event already are left as they are."""
    if not conflicts:
        return 0
    kind = _value_type([e.value for e in conflicts])
    status = await conn.execute(
        "UPDATE meter_events e SET customer_pk = v.c, ts = v.t, value = v.v, accepted_at = v.a,"
        " kafka_partition = v.p, kafka_offset = v.o, kafka_index = v.i"
        f" FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::{kind}[],"
        " $6::bigint[], $7::int[], $8::bigint[], $9::int[]) AS v(m, id, c, t, v, a, p, o, i)"
        " WHERE e.meter_pk = v.m AND e.identifier = v.id AND e.value IS NULL"
        " AND e.cancelled_at IS NOT NULL AND e.ts IS NULL",
        [e.meter_pk for e in conflicts],
        [e.identifier for e in conflicts],
        [e.customer_pk for e in conflicts],
        [e.ts for e in conflicts],
        [e.value for e in conflicts],
        [e.accepted_at for e in conflicts],
        [e.partition for e in conflicts],
        [e.offset for e in conflicts],
        [e.index for e in conflicts],
    )
    return int(status.split()[-1])


_MERGE_LAST = (
    "EXCLUDED.last_ts IS NOT NULL AND (b.last_ts IS NULL OR EXCLUDED.last_ts > b.last_ts"
    " OR (EXCLUDED.last_ts = b.last_ts AND EXCLUDED.last_seq > coalesce(b.last_seq, -1)))"
)


async def write_buckets(
    conn: asyncpg.Connection[Any],
    buckets: dict[BucketKey, Stats],
    tail: tuple[Callable[[int], str], list[Any]] | None,
) -> list[tuple[int, int]]:
    """Add the bucket deltas; ``tail`` is a statement run with them (the stored offsets'
    advance: its SQL given the number of its first parameter, and its arguments). Returns the
    (alert, customer) pairs to evaluate: active alerts on the buckets' meters and customers
    that have not fired for them."""
    keys = sorted(buckets)
    stats = [buckets[k] for k in keys]
    totals = [s.total for s in stats]
    maxes = [s.max for s in stats]
    lasts = [s.last_value for s in stats]
    kind = _numeric_type([*totals, *maxes, *lasts])
    pairs = sorted({(k[0], k[1]) for k in keys})
    n = 12
    args: list[Any] = [
        _literal([k[0] for k in keys]),
        _literal([k[1] for k in keys]),
        _literal([k[2] for k in keys]),
        _literal(totals),
        _literal([s.events for s in stats]),
        _literal(maxes),
        _literal([s.last_ts for s in stats]),
        _literal(lasts),
        _literal([s.last_seq for s in stats]),
        now_s(),
        [p[0] for p in pairs],
        [p[1] for p in pairs],
    ]
    tail_sql = ""
    if tail is not None:
        sql, extra = tail
        tail_sql = f", t AS ({sql(n + 1)})"
        args += extra
    rows = await conn.fetch(
        "WITH b AS (INSERT INTO meter_buckets AS b (meter_pk, customer_pk, minute, total,"
        " events, max, last_ts, last_value, last_seq, updated)"
        " SELECT m, c, mi, tot, n, mx, lts, lv, ls, $10 FROM unnest($1::text::bigint[],"
        f" $2::text::bigint[], $3::text::bigint[], $4::text::{kind}[], $5::text::bigint[],"
        f" $6::text::{kind}[], $7::text::bigint[], $8::text::{kind}[], $9::text::bigint[])"
        " AS v(m, c, mi, tot, n, mx, lts, lv, ls)"
        " ON CONFLICT (meter_pk, customer_pk, minute) DO UPDATE SET"
        " total = b.total + EXCLUDED.total, events = b.events + EXCLUDED.events,"
        " max = greatest(b.max, EXCLUDED.max),"
        f" last_ts = CASE WHEN {_MERGE_LAST} THEN EXCLUDED.last_ts ELSE b.last_ts END,"
        f" last_value = CASE WHEN {_MERGE_LAST} THEN EXCLUDED.last_value ELSE b.last_value END,"
        f" last_seq = CASE WHEN {_MERGE_LAST} THEN EXCLUDED.last_seq ELSE b.last_seq END,"
        " updated = EXCLUDED.updated)"
        f"{tail_sql} {candidates_sql(11, 12)}",
        *args,
    )
    return [(r["alert_pk"], r["customer_pk"]) for r in rows]
