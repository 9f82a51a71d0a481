"""Aggregation semantics (Stripe's), as a pure fold. No I/O.

A period's usage is a map timestamp → quantity, built from its records in arrival order:
``increment`` adds to the quantity at its timestamp, ``set`` replaces it. A window keeps
what each ``aggregateUsage`` needs without re-reading the map:

========================  ======================================================
``sum``                   Σ of the map's quantities                  (``total``)
``max``                   largest quantity in the map                (``max``)
``last_during_period``    quantity at the latest timestamp           (``last_*``)
``last_ever``             the same, carried over from earlier periods
========================  ======================================================

Records are folded in two steps, so that the per-record work happens in memory and the
database only sees one write per touched timestamp:

1. ``collapse`` turns one request's records into one ``Op`` per timestamp, and
   ``merge_ops`` appends a later request's ops (``then``: a ``set`` discards what came
   before it at that timestamp, an increment adds to it);
2. ``apply`` folds each timestamp's op into the window, given the map's old quantity there.

Only a ``set`` that lowers the point holding the maximum needs the map re-read; ``apply``
reports that so the store can recompute ``max`` from the stored points.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = [
    "InvalidRecords",
    "Op",
    "WindowState",
    "apply",
    "billable_quantity",
    "collapse",
    "collapse_valid",
    "combine",
    "fold_map",
    "fold_ops",
    "merge_ops",
    "ops_of",
    "points_to_read",
    "then",
    "window_state",
]


class InvalidRecords(ValueError):
    """A request's records are not ``[[timestamp, quantity, is_set], …]`` inside its period."""


@dataclass(slots=True)
class WindowState:
    total: int = 0
    max: int = 0
    last_ts: int | None = None
    last_quantity: int = 0
    records: int = 0


def window_state(row: Mapping[str, Any]) -> WindowState:
    """A window as stored in ``usage_windows`` (or any row with its five columns)."""
    return WindowState(
        int(row["total"]),
        int(row["max"]),
        row["last_ts"],
        int(row["last_quantity"]),
        int(row["records"]),
    )


class Op(NamedTuple):
    """Several records at one timestamp, collapsed: ``set`` to ``value`` or add ``value``."""

    is_set: bool
    value: int


def then(first: Op, second: Op) -> Op:
    """``first`` followed by ``second`` at the same timestamp, as one op."""
    if second.is_set:
        return second
    return Op(first.is_set, first.value + second.value)


def combine(ops: Iterable[tuple[int, bool]]) -> Op:
    """Collapse (quantity, is_set) records at one timestamp, in arrival order."""
    is_set, value = False, 0
    for quantity, replaces in ops:
        if replaces:
            is_set, value = True, quantity
        else:
            value += quantity
    return Op(is_set, value)


_INT = {int}
_BOOL = {bool}


def _check(
    ts_col: Sequence[Any],
    q_col: Sequence[Any],
    s_col: Sequence[Any],
    period_start: int,
    period_end: int,
) -> None:
    """C-speed checks over whole columns (exact types: JSON's true is not a 1, nor 1 a true)."""
    try:
        ok = (
            set(map(type, ts_col)) == _INT
            and set(map(type, q_col)) == _INT
            and set(map(type, s_col)) == _BOOL
            and min(q_col) >= 0
            and period_start <= min(ts_col)
            and max(ts_col) < period_end
        )
    except TypeError:
        ok = False
    if not ok:
        raise InvalidRecords(
            "records must be [timestamp, quantity >= 0, is_set] with the"
            f" timestamp in [{period_start}, {period_end})"
        )


def _collapse_one(record: Sequence[Any], period_start: int, period_end: int) -> dict[int, Op]:
    try:
        ts, q, is_set = record
    except (TypeError, ValueError) as exc:
        raise InvalidRecords("records must be [timestamp, quantity, is_set] triples") from exc
    if (
        type(ts) is not int
        or type(q) is not int
        or q < 0
        or not period_start <= ts < period_end
        or type(is_set) is not bool
    ):
        raise InvalidRecords(
            "records must be [timestamp, quantity >= 0, is_set] with the"
            f" timestamp in [{period_start}, {period_end})"
        )
    return {ts: Op(bool(is_set), q)}


def collapse(records: Sequence[Sequence[Any]], period_start: int, period_end: int) -> dict[int, Op]:
    """One request's records as one op per timestamp (arrival order within the request).

    Raises:
        InvalidRecords: a record is malformed or outside ``[period_start, period_end)``.
    """
    if len(records) == 1:
        return _collapse_one(records[0], period_start, period_end)
    if not records:
        return {}
    try:
        ts_col, q_col, s_col = zip(*records, strict=True)
    except (TypeError, ValueError) as exc:
        raise InvalidRecords("records must be [timestamp, quantity, is_set] triples") from exc
    _check(ts_col, q_col, s_col, period_start, period_end)
    return _collapse_columns(ts_col, q_col, s_col)


def ops_of(ops: Sequence[Any], period_start: int, period_end: int) -> dict[int, Op]:
    """A request's published ops (``[[timestamp, quantity, is_set], …]``, one per distinct
    timestamp, as ``collapse`` made them), checked.

    Raises:
        InvalidRecords: an op is malformed, outside ``[period_start, period_end)``, or two
            ops share a timestamp.
    """
    if len(ops) == 1:
        return _collapse_one(ops[0], period_start, period_end)
    try:
        ts_col, q_col, s_col = zip(*ops, strict=True)
    except (TypeError, ValueError) as exc:
        raise InvalidRecords("records must be [timestamp, quantity, is_set] triples") from exc
    _check(ts_col, q_col, s_col, period_start, period_end)
    out = {ts: Op(bool(is_set), q) for ts, q, is_set in ops}
    if len(out) != len(ops):
        raise InvalidRecords("a request's ops must have distinct timestamps")
    return out


def collapse_valid(records: Sequence[tuple[int, int, bool]]) -> dict[int, Op]:
    """``collapse`` for records already validated (the ingest's, before publishing)."""
    if len(records) == 1:
        ts, q, is_set = records[0]
        return {ts: Op(is_set, q)}
    if not records:
        return {}
    ts_col, q_col, s_col = zip(*records, strict=True)
    return _collapse_columns(ts_col, q_col, s_col)


def _collapse_columns(
    ts_col: Sequence[int], q_col: Sequence[int], s_col: Sequence[bool]
) -> dict[int, Op]:
    """Fast paths keep the per-record work inside C builtins: increments only (runs of equal
    timestamps summed with slices), sets only (the last set per timestamp wins)."""
    if not any(s_col):
        first, last = ts_col[0], ts_col[-1]
        if first == last and min(ts_col) == max(ts_col):
            return {first: Op(False, sum(q_col))}
        distinct = sorted(set(ts_col))
        if len(distinct) == len(ts_col):
            return {ts: Op(False, q) for ts, q in zip(ts_col, q_col, strict=True)}
        if list(ts_col) == sorted(ts_col):
            out: dict[int, Op] = {}
            lo = 0
            for ts in distinct:
                hi = bisect_right(ts_col, ts, lo)
                out[ts] = Op(False, sum(q_col[lo:hi]))
                lo = hi
            return out
        sums: dict[int, int] = {}
        for ts, q in zip(ts_col, q_col, strict=True):
            sums[ts] = sums.get(ts, 0) + q
        return {ts: Op(False, q) for ts, q in sums.items()}
    if all(s_col):
        return {ts: Op(True, q) for ts, q in zip(ts_col, q_col, strict=True)}
    mixed: dict[int, Op] = {}
    for ts, q, is_set in zip(ts_col, q_col, s_col, strict=True):
        prev = mixed.get(ts)
        if prev is None or is_set:
            mixed[ts] = Op(bool(is_set), q)
        else:
            mixed[ts] = Op(prev.is_set, prev.value + q)
    return mixed


def merge_ops(into: dict[int, Op], later: dict[int, Op]) -> None:
    """Append ``later`` (a later request's ops) to ``into``, in place."""
    for ts, op in later.items():
        prev = into.get(ts)
        into[ts] = op if prev is None or op.is_set else Op(prev.is_set, prev.value + op.value)


def apply(window: WindowState, ts: int, old: int | None, op: Op) -> tuple[int, bool]:
    """Fold one collapsed op into ``window`` (in place).

    ``old`` is the map's quantity at ``ts`` before the op (None: no point there yet).
    Returns the point's new quantity and whether ``max`` must be recomputed from the map.
    """
    before = 0 if old is None else old
    after = op.value if op.is_set else before + op.value
    window.total += after - before
    recompute = False
    if after >= window.max:
        window.max = after
    elif before == window.max:
        recompute = True
    if window.last_ts is None or ts >= window.last_ts:
        window.last_ts = ts
        window.last_quantity = after
    return after, recompute


def points_to_read(window: WindowState, ops: Mapping[int, Op]) -> list[int]:
    """The timestamps whose old quantity ``fold_ops`` needs from the stored map: only those
    before the window's latest timestamp (beyond it the map is empty; at it, the window
    already holds the quantity)."""
    last_ts = window.last_ts
    if last_ts is None:
        return []
    return [ts for ts in ops if ts < last_ts]


def fold_ops(
    window: WindowState, ops: Mapping[int, Op], stored: Mapping[int, int]
) -> tuple[dict[int, int], bool]:
    """Fold a window's collapsed ops into ``window`` (in place).

    ``stored`` holds the map's old quantities at (at least) ``points_to_read``. Returns the
    new quantity of every touched timestamp, and whether ``max`` must be recomputed from
    the whole map (a ``set`` lowered the point that held it).
    """
    last_ts, last_quantity = window.last_ts, window.last_quantity
    points: dict[int, int] = {}
    again = False
    for ts, op in ops.items():
        if last_ts is None or ts > last_ts:
            before: int | None = None
        elif ts == last_ts:
            before = last_quantity
        else:
            before = stored.get(ts)
        points[ts], redo = apply(window, ts, before, op)
        again = again or redo
    return points, again


def fold_map(records: Iterable[tuple[int, int, bool]]) -> dict[int, int]:
    """The usage map of (timestamp, quantity, is_set) records in arrival order (reference)."""
    usage: dict[int, int] = {}
    for ts, quantity, replaces in records:
        usage[ts] = quantity if replaces else usage.get(ts, 0) + quantity
    return usage


def billable_quantity(
    aggregate_usage: str | None, window: WindowState | None, last_ever_before: int = 0
) -> int:
    """The period's billable quantity; ``last_ever_before`` is the carry from earlier periods."""
    if aggregate_usage == "last_ever":
        if window is None or window.last_ts is None:
            return last_ever_before
        return window.last_quantity
    if window is None:
        return 0
    if aggregate_usage == "max":
        return window.max
    if aggregate_usage == "last_during_period":
        return window.last_quantity if window.last_ts is not None else 0
    return window.total
