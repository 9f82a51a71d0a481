"""Billing periods: anchored, [start, end), month ends clamp without drifting."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.periods import INTERVALS, Interval, boundary, period_at, period_containing

anchors = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda d: int(d.timestamp()))
intervals = st.sampled_from(INTERVALS)
counts = st.integers(1, 14)


def _utc(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


def test_month_ends_clamp_and_come_back() -> None:
    anchor = _ts(2024, 1, 31, 9, 30)
    starts = [_utc(boundary(anchor, "month", 1, k)) for k in range(5)]
    assert [(d.month, d.day) for d in starts] == [(1, 31), (2, 29), (3, 31), (4, 30), (5, 31)]
    assert all((d.hour, d.minute) == (9, 30) for d in starts)
    assert _utc(boundary(_ts(2023, 1, 31), "month", 1, 1)).day == 28


def test_leap_day_anchor_yearly() -> None:
    anchor = _ts(2024, 2, 29)
    assert [_utc(boundary(anchor, "year", 1, k)).strftime("%Y-%m-%d") for k in range(5)] == [
        "2024-02-29",
        "2025-02-28",
        "2026-02-28",
        "2027-02-28",
        "2028-02-29",
    ]


@settings(max_examples=300)
@given(anchors, intervals, counts, st.integers(0, 60))
def test_boundaries_strictly_increase(anchor: int, interval: Interval, count: int, k: int) -> None:
    assert boundary(anchor, interval, count, 0) == anchor
    assert boundary(anchor, interval, count, k) < boundary(anchor, interval, count, k + 1)


@settings(max_examples=300)
@given(anchors, st.integers(1, 3), st.integers(0, 40))
def test_months_clamp_to_the_anchor_day(anchor: int, count: int, k: int) -> None:
    a, start = _utc(anchor), _utc(boundary(anchor, "month", count, k))
    months = a.month - 1 + k * count
    assert (start.year, start.month) == (a.year + months // 12, months % 12 + 1)
    assert start.day == min(a.day, calendar.monthrange(start.year, start.month)[1])
    assert start.time() == a.time()


@settings(max_examples=300)
@given(anchors, intervals, counts, st.integers(0, 20 * 366 * 86_400))
def test_period_containing_agrees_with_boundary(
    anchor: int, interval: Interval, count: int, offset: int
) -> None:
    ts = anchor + offset
    period = period_containing(anchor, interval, count, ts)
    assert period.contains(ts)
    assert period.start == boundary(anchor, interval, count, period.index)
    assert period.end == boundary(anchor, interval, count, period.index + 1)
    assert period == period_at(anchor, interval, count, period.index)
    assert period_containing(anchor, interval, count, period.start) == period
    assert period_containing(anchor, interval, count, period.end).index == period.index + 1


@given(anchors, intervals, counts, st.integers(0, 3))
def test_periods_tile_time_without_gaps(
    anchor: int, interval: Interval, count: int, k: int
) -> None:
    assert (
        period_at(anchor, interval, count, k).end == period_at(anchor, interval, count, k + 1).start
    )


def test_day_and_week_lengths() -> None:
    assert period_at(0, "day", 3, 2).start == 6 * 86_400
    assert period_at(0, "week", 2, 1).end - period_at(0, "week", 2, 1).start == 14 * 86_400


def test_refusals() -> None:
    with pytest.raises(ValueError, match="precedes"):
        period_containing(1_000, "day", 1, 999)
    with pytest.raises(ValueError, match="intervalCount"):
        boundary(0, "month", 0, 1)
