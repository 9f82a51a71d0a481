"""Meter events in a prepared batch (pure: no I/O): checking, arrival positions, first copy
wins, and per-minute pre-aggregation equal to folding the events."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from aggregator.batch import BatchBuilder, prepare
from domain.meters import BUCKET_S, fold_events
from domain.meterusage import SEQ_INDEX_SPAN
from domain.wire import MeterEvent, encode_meter_events

T = 1_700_000_040


def msg(offset: int, rows: list[list[Any]]) -> SimpleNamespace:
    return SimpleNamespace(offset=offset, value=orjson.dumps({"v": 2, "m": rows}))


def row(identifier: str, value: Any = 1, **fields: Any) -> list[Any]:
    base = {"account": "acct_x", "livemode": False, "meter": 7, "customer": 3, "ts": T, "at": T}
    base.update(fields)
    return [
        identifier,
        base["account"],
        base["livemode"],
        base["meter"],
        base["customer"],
        base["ts"],
        value,
        base["at"],
    ]


def test_positions_duplicates_and_refusals() -> None:
    batch = prepare(
        {
            0: [
                msg(5, [row("a", 2), row("b", "1.50"), row("a", 9)]),
                msg(6, [row("c", -1), row("d", "1e3"), row("e", ts="x"), row("f", meter=0)]),
                SimpleNamespace(offset=7, value=b'{"v":2,"m":[["broken"]]}'),
                msg(8, [row("b", 4), row("g", 3, meter=8), row("h\x00", 1)]),
            ]
        },
        {0: 5},
    )
    events = {(e.meter_pk, e.identifier): e for e in batch.meter_events}
    assert [e.identifier for e in batch.meter_events] == [
        "a",
        "b",
        "c",
        "d",
        "e",
        "f",
        "g",
        "h\x00",
    ]
    assert batch.meter_duplicates_in_batch == 2  # a, then b in another message
    assert batch.undecodable == 1
    assert batch.ranges[0].start == 5 and batch.ranges[0].next == 9
    a, b = events[(7, "a")], events[(7, "b")]
    assert (a.value, a.seq) == (2, 5 * SEQ_INDEX_SPAN)
    assert (b.value, b.seq) == (Decimal("1.5"), 5 * SEQ_INDEX_SPAN + 1)
    refused = {e.identifier: e.error for e in batch.meter_events if e.error}
    assert set(refused) == {"c", "d", "e", "f", "h\x00"}
    assert [e.identifier for e in batch.meter_events if not e.storable] == ["f", "h\x00"]
    assert "10^18" in str(refused["c"]) and "decimal" in str(refused["d"])
    assert "timestamp" in str(refused["e"]) and "meter_pk" in str(refused["f"])
    # only well-formed events are pre-aggregated
    bucket = batch.buckets[(7, 3, T)]
    assert (bucket.total, bucket.events, bucket.max, bucket.last_value) == (
        Decimal("3.5"),
        2,
        2,
        Decimal("1.5"),
    )
    assert batch.buckets[(8, 3, T)].total == 3


def test_the_batch_restricted_to_some_partitions_keeps_their_events() -> None:
    builder = BatchBuilder({0: 0, 1: 0})
    builder.add(0, [msg(0, [row("a", 1)])])
    builder.add(1, [msg(0, [row("b", 2, customer=4)])])
    batch = builder.build()
    only = batch.only([1])
    assert only is not None
    assert [e.identifier for e in only.meter_events] == ["b"]
    assert list(only.buckets) == [(7, 4, T)]
    assert batch.only([0, 1]) is batch and batch.only([2]) is None


@given(
    st.lists(
        st.tuples(
            st.integers(0, 3),
            st.integers(0, 3 * BUCKET_S),
            st.one_of(st.integers(0, 100), st.decimals("0", "100", places=3)),
        ),
        min_size=1,
        max_size=60,
    ),
    st.integers(1, 7),
)
def test_bucket_deltas_equal_folding_each_minute(
    raw: list[tuple[int, int, Any]], per_message: int
) -> None:
    events = [
        MeterEvent(f"e{i}", "acct_x", False, 1, 1 + c, T + t, v, T)
        for i, (c, t, v) in enumerate(raw)
    ]
    messages = [
        SimpleNamespace(offset=o, value=encode_meter_events(events[i : i + per_message]))
        for o, i in enumerate(range(0, len(events), per_message))
    ]
    batch = prepare({0: messages}, {0: 0})
    seqs = {e.identifier: e.seq for e in batch.meter_events}
    for (meter, customer, minute), got in batch.buckets.items():
        want = fold_events(
            (e.timestamp, e.value, seqs[e.identifier])
            for e in events
            if (e.meter_pk, e.customer_pk) == (meter, customer)
            and minute <= e.timestamp < minute + BUCKET_S
        )
        assert got == want
    assert sum(b.events for b in batch.buckets.values()) == len(events)
