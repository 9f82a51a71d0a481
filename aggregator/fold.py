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

Only a ``set`` that lowers the point holding the maximum needs the map re-read; ``apply``
reports that so the store can recompute ``max`` from the stored points.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["PointOp", "WindowState", "apply", "billable_quantity", "combine", "fold_map"]


@dataclass(slots=True)
class WindowState:
    total: int = 0
    max: int = 0
    last_ts: int | None = None
    last_quantity: int = 0
    records: int = 0


@dataclass(frozen=True, slots=True)
class PointOp:
    """Several records at one timestamp, collapsed: ``set`` to ``value`` or add ``value``."""

    is_set: bool
    value: int


def combine(ops: Iterable[tuple[int, bool]]) -> PointOp:
    """Collapse (quantity, is_set) records at one timestamp, in arrival order."""
    is_set, value = False, 0
    for quantity, replaces in ops:
        if replaces:
            is_set, value = True, quantity
        else:
            value += quantity
    return PointOp(is_set, value)


def apply(window: WindowState, ts: int, old: int | None, op: PointOp) -> tuple[int, bool]:
    """Fold one collapsed op into ``window`` (in place).

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


def fold_map(records: Iterable[tuple[int, int, bool]]) -> dict[int, int]:
    """The usage map of (timestamp, quantity, is_set) records in arrival order (reference)."""
    usage: dict[int, int] = {}
    for ts, quantity, replaces in records:
        usage[ts] = quantity if replaces else usage.get(ts, 0) + quantity
    return usage


def billable_quantity(aggregate_usage: str | None, window: WindowState | None,
                      last_ever_before: int = 0) -> int:
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
