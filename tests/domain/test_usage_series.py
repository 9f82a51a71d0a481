"""The usage chart's series (``domain.usage.running_quantity``): at each slice, the billable
quantity of everything up to it — the same rule (``domain.fold``) the summaries use — and
unit amounts shown with every digit they have."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from domain.currencies import format_unit_amount
from domain.fold import billable_quantity, fold_map, window_state
from domain.store.invoices import UsageSlice
from domain.usage import running_quantity

AGGREGATES = ("sum", "max", "last_during_period", "last_ever")
SLICES = 12
SPAN = 1200  # seconds in the period: a slice is 100 s


def _slices(points: dict[int, int]) -> list[UsageSlice]:
    """What ``usage_slices`` reads from the usage map, computed here the plain way."""
    by: dict[int, list[tuple[int, int]]] = {}
    for ts, q in sorted(points.items()):
        by.setdefault(ts * SLICES // SPAN, []).append((ts, q))
    return [
        UsageSlice(i, sum(q for _, q in pts), max(q for _, q in pts), pts[-1][0], pts[-1][1])
        for i, pts in sorted(by.items())
    ]


def _window(points: dict[int, int]) -> object:
    total = sum(points.values())
    last_ts = max(points) if points else None
    return window_state(
        {
            "total": total,
            "max": max(points.values(), default=0),
            "last_ts": last_ts,
            "last_quantity": points[last_ts] if last_ts is not None else 0,
            "records": len(points),
        }
    )


records = st.lists(
    st.tuples(st.integers(0, SPAN - 1), st.integers(0, 10**6), st.booleans()), max_size=40
)


@given(records, st.sampled_from(AGGREGATES), st.integers(0, 1000))
def test_each_slice_shows_the_billable_quantity_so_far(
    recs: list[tuple[int, int, bool]], aggregate: str, carry: int
) -> None:
    points = fold_map(recs)
    series = running_quantity(aggregate, _slices(points), SLICES, carry)
    assert len(series) == SLICES
    for i, value in enumerate(series):
        upto = {ts: q for ts, q in points.items() if ts * SLICES // SPAN <= i}
        assert value == billable_quantity(aggregate, _window(upto), carry)  # type: ignore[arg-type]
    if aggregate in ("sum", "max"):
        assert series == sorted(series)


def test_only_the_slices_up_to_now_are_drawn() -> None:
    slices = [UsageSlice(0, 5, 5, 10, 5), UsageSlice(3, 7, 7, 350, 7)]
    assert running_quantity("sum", slices, 2) == [5, 5]
    assert running_quantity("sum", slices, 4) == [5, 5, 5, 12]
    assert running_quantity("sum", [], 0) == []


def test_unit_amounts_keep_their_digits() -> None:
    assert format_unit_amount("0.2", "EUR") == "€0.002"
    assert format_unit_amount("5", "EUR") == "€0.05"
    assert format_unit_amount("150", "eur") == "€1.50"
    assert format_unit_amount("12345.678", "USD") == "$123.45678"
    assert format_unit_amount("7", "JPY") == "¥7"
    assert format_unit_amount("0.5", "JPY") == "¥0.5"
