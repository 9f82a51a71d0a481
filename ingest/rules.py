"""Which period a usage request lands in — or why it is refused. Pure: no I/O.

SPEC §4: a record is accepted only if its timestamp lies in the item's current period and
not more than ``future_tolerance_s`` ahead of now; records before the current period are
refused, except that for ``sum`` prices, during the first ``late_grace_s`` of a period,
records for the previous period are still accepted while its invoice is not finalized.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from vinr.errors import InvalidRequest
from vinr.itemmeta import ItemMeta

__all__ = ["Placement", "check_item", "place"]


@dataclass(frozen=True, slots=True)
class Placement:
    period_start: int
    period_end: int


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_item(meta: ItemMeta) -> None:
    """Raises InvalidRequest when the item cannot take usage at all."""
    if meta.deleted:
        raise InvalidRequest(f"subscription item {meta.item_id} was removed from its subscription",
                             param="subscriptionItem", code="subscription_item_deleted")
    if meta.status in ("canceled", "incomplete_expired"):
        raise InvalidRequest(
            f"subscription {meta.subscription_id} is {meta.status}; it takes no more usage",
            param="subscriptionItem", code="subscription_canceled")
    if meta.usage_type != "metered":
        raise InvalidRequest(
            f"subscription item {meta.item_id} has a licensed price; usage records need a"
            " metered price (recurring.usageType = 'metered')",
            param="subscriptionItem", code="price_not_metered")


def place(
    meta: ItemMeta, timestamps: list[int], now: int, *, future_tolerance_s: int,
    late_grace_s: int, params: list[str],
) -> Placement:
    """The one period every timestamp falls in; ``params[i]`` names timestamp i in errors."""
    current = Placement(meta.period_start, meta.period_end)
    chosen: Placement | None = None
    for ts, param in zip(timestamps, params, strict=True):
        if ts > now + future_tolerance_s:
            raise InvalidRequest(
                f"timestamp {ts} ({_iso(ts)}) is more than {future_tolerance_s}s in the future"
                f" (now is {now}, {_iso(now)})", param=param, code="timestamp_in_future")
        if ts >= meta.period_end:
            raise InvalidRequest(
                f"timestamp {ts} ({_iso(ts)}) is after the current period, which ends at"
                f" {meta.period_end} ({_iso(meta.period_end)})", param=param,
                code="timestamp_after_period")
        if ts >= meta.period_start:
            spot = current
        elif (meta.aggregate_usage == "sum" and meta.prev_open
              and meta.prev_period_start is not None and ts >= meta.prev_period_start
              and now < meta.period_start + late_grace_s):
            spot = Placement(meta.prev_period_start, meta.period_start)
        else:
            raise InvalidRequest(
                f"timestamp {ts} ({_iso(ts)}) is before the current billing period, which"
                f" started at {meta.period_start} ({_iso(meta.period_start)}); usage for a"
                " closed period can't be reported — report usage promptly", param=param,
                code="timestamp_before_period")
        if chosen is None:
            chosen = spot
        elif chosen != spot:
            raise InvalidRequest(
                "records span two billing periods; send each period's records in its own"
                " request", param=param, code="records_span_periods")
    return chosen or current
