"""An item's usage as people read it: its billable quantity per period (the API's usage
summaries, the Dashboard's subscription page) and how that quantity grew over the current
period (the Dashboard's chart). Read only; the windows and points are the aggregator's.

The summaries follow ``domain.metering.period_usage`` (the CLI's ``vinr usage`` reads the
same). The chart's series is built from the period's usage map cut into equal time slices,
so its size does not depend on traffic, and it ends at the same billable quantity the
summary reports: both follow ``domain.fold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from domain.fold import WindowState, billable_quantity
from domain.store import invoices as store
from domain.store.invoices import Db, UsageSlice
from domain.store.owned import found
from domain.tenant import Tenant
from infra.ids import derived_id

__all__ = ["CHART_SLICES", "Series", "running_quantity", "summaries", "usage_series"]

# How many equal time slices a period's chart has.
CHART_SLICES = 48


async def summaries(db: Db, t: Tenant, item_id: str) -> list[dict[str, Any]]:
    """The item's usage summaries, newest period first: the current (running) period,
    then closed ones. 404 (``subscriptionItem``) for an item the tenant does not have."""
    item = found(
        await store.usage_item(db, t, item_id),
        what="subscription item",
        ident=item_id,
        param="subscriptionItem",
    )
    return [
        {
            "id": derived_id("sis", str(item["pk"]), str(p.start)),
            "object": "usage_record_summary",
            "livemode": t.livemode,
            "subscriptionItem": item["id"],
            "totalUsage": p.total,
            "period": {"start": p.start, "end": p.end},
            "invoice": p.invoice,
        }
        for p in await store.usage_periods(db, item)
    ]


@dataclass(frozen=True, slots=True)
class Series:
    """The billable quantity at the end of each of ``len(values)`` equal slices of
    ``[start, end)``; slices after ``now`` are absent (the future has no usage yet)."""

    start: int
    end: int
    now: int
    values: list[int]
    aggregate_usage: str | None

    @property
    def slice_s(self) -> float:
        return (self.end - self.start) / CHART_SLICES


def running_quantity(
    aggregate_usage: str | None, slices: Sequence[UsageSlice], count: int, carry: int = 0
) -> list[int]:
    """The billable quantity as it stood at the end of each of the first ``count`` slices
    (pure). ``slices``: the map's per-slice sum, max and latest quantity (slices without
    usage absent); ``carry``: the quantity a ``last_ever`` item brings from before."""
    by_index = {s.index: s for s in slices}
    window = WindowState()
    out: list[int] = []
    for i in range(count):
        s = by_index.get(i)
        if s is not None:
            window.total += s.total
            window.max = max(window.max, s.max)
            window.last_ts = s.last_ts
            window.last_quantity = s.last
        out.append(billable_quantity(aggregate_usage, window, carry))
    return out


async def usage_series(
    db: Db, t: Tenant, item_id: str, *, start: int, end: int, now: int, carry: int = 0
) -> Series:
    """How the item's billable quantity grew over ``[start, end)`` up to ``now``."""
    item = found(
        await store.usage_item(db, t, item_id),
        what="subscription item",
        ident=item_id,
        param="subscriptionItem",
    )
    slices = await store.usage_slices(db, item["pk"], start, end, CHART_SLICES)
    if now <= start:
        count = 0
    elif now >= end:
        count = CHART_SLICES
    else:
        count = min(CHART_SLICES, (now - start) * CHART_SLICES // (end - start) + 1)
    values = running_quantity(item["aggregate_usage"], slices, count, carry)
    return Series(start, end, now, values, item["aggregate_usage"])
