"""Billing meters: formulas, event values, timestamps and minute buckets. Pure: no I/O.

A meter folds the events named its ``eventName`` into one figure per customer and time
range, by its formula:

=========  ==============================================================
``sum``    Σ of the events' values
``count``  the number of events (values are ignored)
``max``    the largest value; 0 when there is none
``last``   the value of the latest event (by timestamp, then arrival); 0 when none
=========  ==============================================================

Events are kept per meter, customer and minute as ``Stats`` — total, count, max and the
latest event — which merge exactly (``merge``), so a range is answered from the minute
buckets inside it plus the events of the partial minutes at its edges, never by reading
every event. A cancelled event leaves its bucket: sum and count subtract it, max and last
rebuild the bucket from its remaining events.

Values are decimals with up to ``MAX_VALUE_PLACES`` places, summed exactly (``Decimal``,
and ``numeric`` in Postgres); integral values stay ``int`` on the hot path.

An event is accepted when its timestamp is at most the future tolerance ahead of now, at
most ``MAX_AGE_S`` behind, and not before the customer's invoiced boundary for the meter
(``closing_until``: the end of the latest period whose invoice is closing or final).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from domain.amounts import decimal_str

__all__ = [
    "BUCKET_S",
    "FORMULAS",
    "MAX_AGE_S",
    "MAX_BATCH_EVENTS",
    "MAX_SUMMARY_WINDOWS",
    "MAX_VALUE",
    "MAX_VALUE_PLACES",
    "WINDOW_S",
    "Formula",
    "Number",
    "Stats",
    "bucket_of",
    "decimal_text",
    "event_stats",
    "fold_events",
    "formula_value",
    "grouping_windows",
    "merge",
    "parse_formula",
    "parse_value",
    "timestamp_refusal",
    "window_count",
]

Formula = Literal["sum", "count", "last", "max"]
FORMULAS: tuple[Formula, ...] = ("sum", "count", "last", "max")
Number = int | Decimal

BUCKET_S = 60  # a bucket is one UTC minute
MAX_AGE_S = 35 * 86_400  # how far back an event may be timestamped
MAX_BATCH_EVENTS = 1000
MAX_VALUE_PLACES = 12
MAX_VALUE = 10**18  # exclusive: an event's value is below a quintillion

_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,17})(?:\.[0-9]{1,12})?")


def parse_formula(raw: Any) -> Formula:
    """The formula named ``raw``; ValueError naming the four otherwise."""
    for formula in FORMULAS:
        if raw == formula:
            return formula
    raise ValueError(f"formula must be one of {', '.join(FORMULAS)}")


def parse_value(raw: Any) -> Number:
    """An event's value: an integer, or a decimal string with up to 12 places, in
    ``[0, MAX_VALUE)``. Integral values come back as ``int``.

    Raises:
        ValueError: with a message saying what the value must be.
    """
    if type(raw) is int:
        if 0 <= raw < MAX_VALUE:
            return raw
        raise ValueError(f"value must be >= 0 and < 10^18, got {raw}")
    if type(raw) is str and _DECIMAL.fullmatch(raw):
        if "." not in raw:
            return int(raw)
        value = Decimal(raw)
        return int(value) if value == value.to_integral_value() else value.normalize()
    raise ValueError(
        'value must be an integer or a decimal string (e.g. "12.5") >= 0 and < 10^18,'
        f" with at most {MAX_VALUE_PLACES} decimal places"
    )


def decimal_text(value: Number) -> str:
    """A value as the API writes it: plain digits, no exponent, no trailing zeros."""
    return decimal_str(value) if isinstance(value, Decimal) else str(value)


def bucket_of(ts: int) -> int:
    """The start of the minute bucket holding ``ts``."""
    return ts - ts % BUCKET_S


def _utc(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def timestamp_refusal(
    ts: int, now: int, closing_until: int, *, future_tolerance_s: int
) -> tuple[str, str] | None:
    """Why an event at ``ts`` is refused — ``(code, message)`` — or None when accepted."""
    if ts > now + future_tolerance_s:
        return (
            "timestamp_in_future",
            f"timestamp {ts} is more than {future_tolerance_s} s ahead of now ({now})",
        )
    if ts < closing_until:
        return (
            "timestamp_in_invoiced_period",
            f"timestamp {ts} ({_utc(ts)}) lies in a period that is already invoiced for this"
            f" customer: events must be at or after {closing_until} ({_utc(closing_until)})",
        )
    if ts < now - MAX_AGE_S:
        return (
            "timestamp_too_old",
            f"timestamp {ts} is more than 35 days before now ({now}); the earliest accepted"
            f" is {now - MAX_AGE_S}",
        )
    return None


@dataclass(slots=True)
class Stats:
    """What every formula needs of a set of events: kept per bucket, merged per range."""

    total: Number = 0
    events: int = 0
    max: Number | None = None
    last_ts: int | None = None
    last_value: Number = 0
    last_seq: int = -1  # arrival position of the latest event: ties at one timestamp


def merge(into: Stats, later: Stats) -> Stats:
    """``into`` with ``later`` folded in (exact for every formula); returns ``into``.

    ``later``'s latest event wins a tie at one timestamp when its arrival position is
    later — positions compare within one meter and customer (one partition)."""
    into.total += later.total
    into.events += later.events
    if later.max is not None and (into.max is None or later.max > into.max):
        into.max = later.max
    if later.last_ts is not None and (
        into.last_ts is None
        or later.last_ts > into.last_ts
        or (later.last_ts == into.last_ts and later.last_seq >= into.last_seq)
    ):
        into.last_ts = later.last_ts
        into.last_value = later.last_value
        into.last_seq = later.last_seq
    return into


def event_stats(ts: int, value: Number, seq: int) -> Stats:
    """One event's stats."""
    return Stats(value, 1, value, ts, value, seq)


def fold_events(events: Iterable[tuple[int, Number, int]]) -> Stats:
    """Stats of ``(ts, value, seq)`` events in any order (the ground truth for tests too)."""
    stats = Stats()
    for ts, value, seq in events:
        merge(stats, event_stats(ts, value, seq))
    return stats


def formula_value(formula: Formula, stats: Stats | None) -> Number:
    """The meter's figure for ``stats`` (no events: 0 for every formula)."""
    if stats is None or stats.events == 0:
        return 0
    if formula == "sum":
        return stats.total
    if formula == "count":
        return stats.events
    if formula == "max":
        return stats.max if stats.max is not None else 0
    return stats.last_value


# Summary windows (``valueGroupingWindow``): UTC-aligned, at most this many in one answer.
WINDOW_S: dict[str, int] = {"hour": 3_600, "day": 86_400}
MAX_SUMMARY_WINDOWS = 1000


def window_count(start: int, end: int, window: str | None) -> int:
    """How many summaries ``[start, end)`` splits into (one without a window)."""
    if window is None or end <= start:
        return 1
    size = WINDOW_S[window]
    first = start - start % size
    return -(-(end - first) // size)


def grouping_windows(start: int, end: int, window: str | None) -> list[tuple[int, int]]:
    """``[start, end)`` split at each UTC hour or day boundary, oldest first, the first and
    last clipped to the range; the range itself without a window. Check ``window_count``
    first: this builds every window."""
    if window is None:
        return [(start, end)]
    size = WINDOW_S[window]
    out: list[tuple[int, int]] = []
    lo = start
    while lo < end:
        hi = min(end, lo - lo % size + size)
        out.append((lo, hi))
        lo = hi
    return out
