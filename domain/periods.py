"""Billing periods: ``[start, end)`` in UTC, anchored at the subscription's creation.

Pure: no I/O. Boundaries are always computed from the anchor (never by stepping from the
previous boundary), so month ends clamp without drifting: Jan 31 → Feb 28/29 → Mar 31.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

__all__ = ["INTERVALS", "Interval", "Period", "boundary", "period_at", "period_containing"]

Interval = Literal["day", "week", "month", "year"]
INTERVALS: tuple[Interval, ...] = ("day", "week", "month", "year")


@dataclass(frozen=True, slots=True)
class Period:
    index: int
    start: int
    end: int

    def contains(self, ts: int) -> bool:
        return self.start <= ts < self.end


def _add_months(anchor: datetime, months: int) -> datetime:
    total = anchor.month - 1 + months
    year, month = anchor.year + total // 12, total % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def boundary(anchor: int, interval: Interval, count: int, k: int) -> int:
    """Unix seconds of the k-th period start (k = 0 is the anchor itself)."""
    if count < 1:
        raise ValueError("intervalCount must be at least 1")
    steps = k * count
    if interval == "day":
        return anchor + steps * 86_400
    if interval == "week":
        return anchor + steps * 7 * 86_400
    base = datetime.fromtimestamp(anchor, UTC)
    months = steps if interval == "month" else steps * 12
    return int(_add_months(base, months).timestamp())


def period_at(anchor: int, interval: Interval, count: int, index: int) -> Period:
    return Period(
        index,
        boundary(anchor, interval, count, index),
        boundary(anchor, interval, count, index + 1),
    )


def period_containing(anchor: int, interval: Interval, count: int, ts: int) -> Period:
    """The period that holds ``ts`` (which must not precede the anchor)."""
    if ts < anchor:
        raise ValueError("timestamp precedes the billing anchor")
    if interval in ("day", "week"):
        length = (86_400 if interval == "day" else 7 * 86_400) * count
        return period_at(anchor, interval, count, (ts - anchor) // length)
    a, t = datetime.fromtimestamp(anchor, UTC), datetime.fromtimestamp(ts, UTC)
    months = (t.year - a.year) * 12 + (t.month - a.month)
    per = count if interval == "month" else count * 12
    index = max(months // per, 0)
    while boundary(anchor, interval, count, index) > ts:
        index -= 1
    while boundary(anchor, interval, count, index + 1) <= ts:
        index += 1
    return period_at(anchor, interval, count, index)
