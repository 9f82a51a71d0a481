"""The cardinality stage's pure parts: its workload (every record a point of its own, one
batch request per item, published as the ingest publishes), the floor's batches, and how
the breakdown names the aggregator's statements and splits a plan's table writes."""

from __future__ import annotations

import inspect

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

import aggregator.store
from aggregator.batch import decode_requests
from bench.cardinality import (
    _KINDS,
    PERIOD,
    _modify_times,
    build_workload,
    floor_batches,
    points_of,
    statement_kind,
)

PARTITIONS = [0, 1, 2, 3]


@pytest.mark.parametrize(("items", "points"), [(10, 300), (100, 300), (300, 300)])
def test_the_workload_spreads_the_same_points_over_the_items(items: int, points: int) -> None:
    w = build_workload(items, points, PARTITIONS)
    assert (w.records, w.requests, w.published, len(w.messages)) == (points, items, points, items)
    seen: set[tuple[int, int]] = set()
    published_items = []
    for partition, key, value in w.messages:
        (request,) = decode_requests(value, partition, 0)
        assert request.ops is not None and request.error is None
        assert key == str(request.item_pk).encode()
        assert partition == DefaultPartitioner()(key, PARTITIONS, PARTITIONS)
        assert (request.period_start, request.period_end) == PERIOD
        assert request.count == points // items == len(request.ops)
        truth = w.truth[(request.item_pk, PERIOD[0])]
        assert {ts: (op.is_set, op.value) for ts, op in request.ops.items()} == {
            ts: (is_set, q) for ts, q, is_set in truth
        }
        seen |= {(request.item_pk, ts) for ts in request.ops}
        published_items.append(request.item_pk)
    assert len(seen) == points  # every record is a point of its own
    assert sorted(published_items) == list(range(items))
    assert len({ts for _, ts in seen}) == points  # distinct timestamps across items too


def test_the_items_are_published_in_random_order() -> None:
    order = [int(key) for _, key, _ in build_workload(100, 1000, PARTITIONS).messages]
    assert order != sorted(order)
    assert order == [int(key) for _, key, _ in build_workload(100, 1000, PARTITIONS).messages]


def test_points_must_divide_evenly_over_the_items() -> None:
    with pytest.raises(ValueError):
        build_workload(7, 100, PARTITIONS)
    with pytest.raises(ValueError):
        build_workload(0, 100, PARTITIONS)


def test_the_floor_writes_the_same_points_in_publish_order() -> None:
    w = build_workload(50, 500, PARTITIONS)
    points = points_of(w)
    assert sorted(points) == sorted(
        (item, ts, q) for (item, _), recs in w.truth.items() for ts, q, _ in recs
    )
    firsts = [points[i][0] for i in range(0, len(points), 10)]
    assert firsts == [int(key) for _, key, _ in w.messages]


@given(st.lists(st.integers(), max_size=200), st.integers(1, 50))
def test_floor_batches_cut_without_loss(values: list[int], size: int) -> None:
    points = [(v, v, v) for v in values]
    batches = floor_batches(points, size)
    assert [p for b in batches for p in b] == points
    assert all(len(b) == size for b in batches[:-1])
    assert all(0 < len(b) <= size for b in batches)


def test_a_floor_batch_has_rows() -> None:
    with pytest.raises(ValueError):
        floor_batches([(1, 1, 1)], 0)


def test_every_step_named_is_a_statement_the_store_sends() -> None:
    source = inspect.getsource(aggregator.store)
    for prefix, _ in _KINDS:
        if prefix not in ("BEGIN", "COMMIT"):  # asyncpg's transaction sends those
            assert prefix in source, prefix
    assert statement_kind("BEGIN;") == "begin"
    assert statement_kind("  SELECT p.item_pk, p.ts FROM usage_points") == "old points read"
    assert statement_kind("TRUNCATE usage_ledger") == "other"


def test_a_plans_table_writes_are_summed_by_table() -> None:
    plan = {
        "Node Type": "ModifyTable",
        "Operation": "Update",
        "Relation Name": "consumer_offsets",
        "Actual Total Time": 0.5,
        "Actual Loops": 1,
        "Plans": [
            {
                "Node Type": "ModifyTable",
                "Operation": "Insert",
                "Relation Name": "usage_points",
                "Actual Total Time": 12.0,
                "Actual Loops": 1,
                "Subplan Name": "CTE p",
                "Plans": [{"Node Type": "Function Scan", "Actual Total Time": 1.0}],
            },
            {
                "Node Type": "ModifyTable",
                "Operation": "Update",
                "Relation Name": "usage_windows",
                "Actual Total Time": 3.0,
                "Actual Loops": 2,
            },
        ],
    }
    assert _modify_times(plan) == {
        "update consumer_offsets": 0.5,
        "insert usage_points": 12.0,
        "update usage_windows": 6.0,
    }
