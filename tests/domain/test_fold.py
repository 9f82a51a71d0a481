"""The aggregation fold, exhaustively: collapse, merge, incremental apply.

The reference is ``fold_map`` — the usage map built record by record in arrival order —
and the table's definitions computed directly from it (sum, max, quantity at the latest
timestamp). The incremental path is driven the way the store drives it: requests collapse
to one op per timestamp, a batch merges its requests, and each batch folds into a window
whose old points come from a simulated ``usage_points`` table.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.fold import (
    InvalidRecords,
    Op,
    WindowState,
    billable_quantity,
    collapse,
    combine,
    fold_map,
    fold_ops,
    merge_ops,
    points_to_read,
    then,
)

START, END = 1_000, 2_000

Record = tuple[int, int, bool]

timestamps = st.integers(START, START + 20)  # few distinct timestamps: many collisions
quantities = st.one_of(st.integers(0, 100), st.integers(0, 2**53))
records = st.lists(st.tuples(timestamps, quantities, st.booleans()), max_size=60)


def expected(recs: list[Record]) -> WindowState:
    """The billable quantity, straight from the timestamp → quantity map."""
    usage = fold_map(recs)
    if not usage:
        return WindowState(records=len(recs))
    last = max(usage)
    return WindowState(
        total=sum(usage.values()),
        max=max(usage.values()),
        last_ts=last,
        last_quantity=usage[last],
        records=len(recs),
    )


def fold_incrementally(batches: list[list[list[Record]]]) -> tuple[WindowState, dict[int, int]]:
    """Batches of requests, folded as the store does; returns the window and the map."""
    window = WindowState()
    table: dict[int, int] = {}  # the simulated usage_points rows
    for batch in batches:
        ops: dict[int, Op] = {}
        count = 0
        for request in batch:
            merge_ops(ops, collapse(request, START, END))
            count += len(request)
        stored = {ts: table[ts] for ts in points_to_read(window, ops) if ts in table}
        points, recompute = fold_ops(window, ops, stored)
        table.update(points)
        window.records += count
        if recompute:
            window.max = max(table.values(), default=0)
    return window, table


def split(items: list[Record], cuts: list[int]) -> list[list[Record]]:
    bounds = sorted({c % (len(items) + 1) for c in cuts} | {0, len(items)})
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


@settings(max_examples=400)
@given(
    records, st.lists(st.integers(0, 100), max_size=8), st.lists(st.integers(0, 100), max_size=4)
)
def test_incremental_fold_equals_the_map(
    recs: list[Record], request_cuts: list[int], batch_cuts: list[int]
) -> None:
    requests = split(recs, request_cuts)
    batches = [
        requests[a:b]
        for a, b in itertools.pairwise(
            sorted({c % (len(requests) + 1) for c in batch_cuts} | {0, len(requests)})
        )
        if b > a
    ]
    window, table = fold_incrementally(batches)
    assert window == expected(recs)
    assert table == fold_map(recs)


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(START, END - 1), quantities, st.booleans()),
        max_size=30,
        unique_by=lambda r: r[0],
    ),
    st.randoms(),
)
def test_any_order_of_distinct_timestamps_gives_the_same_window(
    recs: list[Record], rnd: object
) -> None:
    shuffled = list(recs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    one_by_one, _ = fold_incrementally([[[r]] for r in recs])
    reordered, _ = fold_incrementally([[[r]] for r in shuffled])
    in_one_request, _ = fold_incrementally([[shuffled]])
    assert one_by_one == reordered == in_one_request == expected(recs)


@pytest.mark.parametrize(
    ("aggregate", "quantity"),
    [("sum", 36), ("last_during_period", 5), ("last_ever", 5), ("max", 20)],
)
@pytest.mark.parametrize("arrival", list(itertools.permutations(range(4))))
def test_stripe_example(aggregate: str, quantity: int, arrival: tuple[int, ...]) -> None:
    """Increments 10, 20, 1, 5 at t1 < t2 < t3 < t4, in any arrival order."""
    example = [
        (START + 1, 10, False),
        (START + 2, 20, False),
        (START + 3, 1, False),
        (START + 4, 5, False),
    ]
    window, _ = fold_incrementally([[[example[i]]] for i in arrival])
    assert (window.total, window.last_quantity, window.max) == (36, 5, 20)
    assert billable_quantity(aggregate, window) == quantity


def test_set_replaces_the_usage_at_its_timestamp() -> None:
    recs = [
        (START + 10, 10, False),
        (START + 20, 20, False),
        (START + 10, 4, False),
        (START + 30, 1, False),
        (START + 10, 7, True),
        (START + 30, 3, True),
    ]
    window, table = fold_incrementally([[[r]] for r in recs])
    assert table == {START + 10: 7, START + 20: 20, START + 30: 3}
    assert (window.total, window.max, window.last_ts, window.last_quantity) == (
        30,
        20,
        START + 30,
        3,
    )


def test_a_set_lowering_the_maximum_recomputes_it() -> None:
    window, _ = fold_incrementally(
        [[[(START + 1, 50, False)], [(START + 2, 30, False)]], [[(START + 1, 10, True)]]]
    )
    assert (window.max, window.total) == (30, 40)


@given(st.lists(st.tuples(quantities, st.booleans()), max_size=20))
def test_combine_and_collapse_agree_with_the_map_at_one_timestamp(
    ops: list[tuple[int, bool]],
) -> None:
    recs = [(START, q, s) for q, s in ops]
    if not recs:
        assert collapse(recs, START, END) == {}
        return
    op = combine(ops)
    assert collapse(recs, START, END) == {START: op}
    assert fold_map(recs)[START] == op.value


@given(records, records)
def test_merging_requests_equals_collapsing_them_together(a: list[Record], b: list[Record]) -> None:
    merged = collapse(a, START, END)
    merge_ops(merged, collapse(b, START, END))
    assert merged == collapse(a + b, START, END)


@given(
    st.tuples(st.booleans(), quantities),
    st.tuples(st.booleans(), quantities),
    st.tuples(st.booleans(), quantities),
)
def test_then_is_associative(x: tuple[bool, int], y: tuple[bool, int], z: tuple[bool, int]) -> None:
    a, b, c = Op(*x), Op(*y), Op(*z)
    assert then(then(a, b), c) == then(a, then(b, c))


@given(records)
def test_collapse_fast_paths_match_the_general_loop(recs: list[Record]) -> None:
    """Sorted, all-set and all-increment inputs take the C-speed paths."""
    for variant in (
        sorted(recs, key=lambda r: r[0]),
        [(t, q, True) for t, q, _ in recs],
        [(t, q, False) for t, q, _ in recs],
        [(t, q, False) for t, q, _ in sorted(recs, key=lambda r: r[0])],
    ):
        by_ts: dict[int, list[tuple[int, bool]]] = {}
        for ts, q, s in variant:
            by_ts.setdefault(ts, []).append((q, s))
        assert collapse(variant, START, END) == {ts: combine(o) for ts, o in by_ts.items()}


@pytest.mark.parametrize(
    "bad",
    [
        [[START - 1, 1, False]],
        [[END, 1, False]],
        [[START, -1, False]],
        [[START, 1.5, False]],
        [[START, "1", False]],
        [[str(START), 1, False]],
        [[START, 1]],
        [[START, 1, False, 0]],
        [START],
        [[START, 1, False], [START, 2]],
        [[START, 1, False], [END, 2, False]],
        [[START, 1, False], [START, -2, False]],
        [[START, 1, False], [START, 2.0, False]],
        [[START, 1, False], [START, 1, "yes"]],
        [[START, 1, "yes"]],
    ],
)
def test_collapse_rejects_malformed_records(bad: list[object]) -> None:
    with pytest.raises(InvalidRecords):
        collapse(bad, START, END)  # type: ignore[arg-type]


def test_billable_quantity_of_an_empty_period() -> None:
    assert billable_quantity("sum", None) == 0
    assert billable_quantity("max", WindowState()) == 0
    assert billable_quantity("last_during_period", WindowState()) == 0
    assert billable_quantity("last_ever", None, last_ever_before=7) == 7
    assert billable_quantity("last_ever", WindowState(), last_ever_before=7) == 7
