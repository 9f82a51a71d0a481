"""Billable quantities of metered items, many at a time, and a period's price segments.

An item whose price bills a meter (``recurring.meter``) is measured from the meter instead:
its customer's usage of the meter over the line's range, by the meter's formula
(``domain.meterusage.range_stats``, ``domain.meters.formula_value``); its quantity may be
decimal. Segments of such an item split by the events' timestamps, as records do.

A period normally bills from its usage window (``usage_windows``, kept by the aggregator).
When an item's price changed during the period, the period splits into segments at the
change times and each segment is billed at its own price from the period's usage map
(``usage_points``: timestamp → quantity): a record belongs to the segment its timestamp
falls in, so usage before the change is billed at the old price and after at the new.
The map is complete for a window until the window is closed and purged, and the invoicer
measures segments before closing (draft) and while closing (finalize), never after.

The same sources answer what an item used: ``period_usage`` lists its periods as the usage
summaries do (one billable quantity per period, the running one included), and
``span_levels`` reads a period's map cut into equal spans (``domain.store.invoices.
usage_slices``) as its aggregation does, for a chart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Protocol

import asyncpg

from domain.fold import WindowState, billable_quantity, window_state
from domain.meters import Formula, Number, formula_value
from domain.meterusage import RangeAsk, range_stats

__all__ = [
    "Ask",
    "MeterUse",
    "PeriodUsage",
    "PriceChange",
    "Segment",
    "Span",
    "measure",
    "period_usage",
    "price_at",
    "price_segments",
    "span_levels",
]


class Span(Protocol):
    """One equal time span of a usage map (``domain.store.invoices.UsageSlice``)."""

    @property
    def index(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def max(self) -> int: ...
    @property
    def last(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PriceChange:
    changed_at: int
    old_price_id: str
    new_price_id: str


@dataclass(frozen=True, slots=True)
class Segment:
    start: int
    end: int
    price_id: str


def price_at(ts: int, current_price_id: str, changes: Sequence[PriceChange]) -> str:
    """The price in effect at ``ts``; ``changes`` in the order they were made."""
    if not changes:
        return current_price_id
    latest: PriceChange | None = None
    for change in changes:
        if change.changed_at <= ts:
            latest = change
    return changes[0].old_price_id if latest is None else latest.new_price_id


def price_segments(
    start: int, end: int, current_price_id: str, changes: Sequence[PriceChange]
) -> list[Segment]:
    """``[start, end)`` cut at every change inside it; neighbours with one price merge."""
    cuts = sorted({c.changed_at for c in changes if start < c.changed_at < end})
    bounds = [start, *cuts, end]
    segments: list[Segment] = []
    for lo, hi in pairwise(bounds):
        price = price_at(lo, current_price_id, changes)
        if segments and segments[-1].price_id == price:
            segments[-1] = Segment(segments[-1].start, hi, price)
        else:
            segments.append(Segment(lo, hi, price))
    return segments


@dataclass(frozen=True, slots=True)
class MeterUse:
    """A line billing a meter: its customer's usage of the meter, by the meter's formula."""

    meter_pk: int
    customer_pk: int
    formula: Formula


@dataclass(frozen=True, slots=True)
class Ask:
    """One metered line to measure: ``[start, end)`` of the window ``(item_pk, window_start)``
    (the whole period, or one price segment of it), aggregated as ``aggregate``; or, with
    ``meter``, that meter's usage over ``[start, end)``."""

    item_pk: int
    window_start: int
    start: int
    end: int
    aggregate: str | None
    whole: bool
    meter: MeterUse | None = None


_WINDOWS = """
SELECT k.n, w.total, w.max, w.last_ts, w.last_quantity, w.records
FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS k(i, s, n)
JOIN usage_windows w ON w.item_pk = k.i AND w.period_start = k.s
"""

_CARRIES = """
SELECT k.n, (SELECT w.last_quantity FROM usage_windows w
             WHERE w.item_pk = k.i AND w.period_start < k.s AND w.last_ts IS NOT NULL
             ORDER BY w.period_start DESC LIMIT 1) AS carry
FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS k(i, s, n)
"""

_SEGMENTS = """
SELECT k.n, agg.total, agg.max, inside.q AS last_inside, since.q AS last_since_start
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[])
     WITH ORDINALITY AS k(i, ws, a, b, n)
CROSS JOIN LATERAL (SELECT coalesce(sum(p.quantity), 0) AS total,
                           coalesce(max(p.quantity), 0) AS max
                    FROM usage_points p WHERE p.item_pk = k.i AND p.ts >= k.a AND p.ts < k.b) agg
LEFT JOIN LATERAL (SELECT p.quantity AS q FROM usage_points p
                   WHERE p.item_pk = k.i AND p.ts >= k.a AND p.ts < k.b
                   ORDER BY p.ts DESC LIMIT 1) inside ON true
LEFT JOIN LATERAL (SELECT p.quantity AS q FROM usage_points p
                   WHERE p.item_pk = k.i AND p.ts >= k.ws AND p.ts < k.b
                   ORDER BY p.ts DESC LIMIT 1) since ON true
"""


async def measure(conn: asyncpg.Connection[Any], asks: Sequence[Ask]) -> list[Number]:
    """The billable quantity of each ask, in order (at most five queries in all: three for
    usage records, two for meters)."""
    out: list[Number] = [0] * len(asks)
    metered = [i for i, a in enumerate(asks) if a.meter is not None]
    if metered:
        stats = await range_stats(
            conn,
            [
                RangeAsk(m.meter_pk, m.customer_pk, asks[i].start, asks[i].end)
                for i in metered
                if (m := asks[i].meter) is not None
            ],
        )
        for i, s in zip(metered, stats, strict=True):
            meter = asks[i].meter
            assert meter is not None
            out[i] = formula_value(meter.formula, s)
    whole = [i for i, a in enumerate(asks) if a.whole and a.meter is None]
    parts = [i for i, a in enumerate(asks) if not a.whole and a.meter is None]
    states: dict[int, WindowState] = {}
    if whole:
        rows = await conn.fetch(
            _WINDOWS, [asks[i].item_pk for i in whole], [asks[i].window_start for i in whole]
        )
        for r in rows:
            states[whole[r["n"] - 1]] = window_state(r)
    segments: dict[int, asyncpg.Record] = {}
    if parts:
        rows = await conn.fetch(
            _SEGMENTS,
            [asks[i].item_pk for i in parts],
            [asks[i].window_start for i in parts],
            [asks[i].start for i in parts],
            [asks[i].end for i in parts],
        )
        segments = {parts[r["n"] - 1]: r for r in rows}
    # last_ever with nothing in its own window so far carries the latest earlier window's.
    carry_for = [
        i
        for i, a in enumerate(asks)
        if a.meter is None
        and a.aggregate == "last_ever"
        and (
            (a.whole and (i not in states or states[i].last_ts is None))
            or (not a.whole and segments[i]["last_since_start"] is None)
        )
    ]
    carries: dict[int, int] = {}
    if carry_for:
        rows = await conn.fetch(
            _CARRIES,
            [asks[i].item_pk for i in carry_for],
            [asks[i].window_start for i in carry_for],
        )
        carries = {carry_for[r["n"] - 1]: int(r["carry"] or 0) for r in rows}
    for i, ask in enumerate(asks):
        if ask.meter is not None:
            continue
        carry = carries.get(i, 0)
        if ask.whole:
            out[i] = billable_quantity(ask.aggregate, states.get(i), carry)
            continue
        seg = segments[i]
        if ask.aggregate == "last_ever":
            since = seg["last_since_start"]
            out[i] = carry if since is None else int(since)
        elif ask.aggregate == "max":
            out[i] = int(seg["max"])
        elif ask.aggregate == "last_during_period":
            out[i] = 0 if seg["last_inside"] is None else int(seg["last_inside"])
        else:
            out[i] = int(seg["total"])
    return out


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """One period of an item: its billable quantity so far and the invoice that billed it."""

    start: int
    end: int
    total: int
    invoice: str | None
    current: bool  # the subscription's running period
    last_at: int | None  # the latest timestamp of its usage


def period_usage(
    aggregate: str | None,
    windows: Sequence[Mapping[str, Any]],
    current: tuple[int, int] | None,
    invoices: Mapping[int, str],
) -> list[PeriodUsage]:
    """An item's periods, newest first: every usage window (rows of ``usage_windows``), and
    the running period ``current`` (start, end) even before it has usage (None once the
    subscription is canceled). ``invoices`` maps a period start to the invoice that billed
    it, for windows not closed by one. ``last_ever`` carries the latest earlier quantity
    into periods without usage of their own."""
    periods: dict[int, tuple[int, WindowState | None, str | None]] = {
        w["period_start"]: (w["period_end"], window_state(w), w["invoice_id"]) for w in windows
    }
    if current is not None and current[0] not in periods:
        periods[current[0]] = (current[1], None, None)
    out: list[PeriodUsage] = []
    carry = 0
    for start in sorted(periods):
        end, state, invoice_id = periods[start]
        total = billable_quantity(aggregate, state, carry)
        if state is not None and state.last_ts is not None:
            carry = state.last_quantity
        is_current = current is not None and start == current[0]
        out.append(
            PeriodUsage(
                start,
                end,
                total,
                invoice_id or invoices.get(start),
                is_current,
                None if state is None else state.last_ts,
            )
        )
    out.reverse()
    return out


def span_levels(aggregate: str | None, spans: Sequence[Span], count: int) -> list[int]:
    """One value per span, ``count`` spans, as the aggregation reads the map: usage added in
    each span for ``sum``; the largest quantity reported in it for ``max``; for
    ``last_during_period`` and ``last_ever`` the level in effect at the span's end (the
    last quantity reported so far in the period, 0 before the first)."""
    by_index = {s.index: s for s in spans}
    levels: list[int] = []
    level = 0
    for i in range(count):
        span = by_index.get(i)
        if aggregate in ("last_during_period", "last_ever"):
            level = span.last if span is not None else level
            levels.append(level)
        elif aggregate == "max":
            levels.append(span.max if span is not None else 0)
        else:
            levels.append(span.total if span is not None else 0)
    return levels
