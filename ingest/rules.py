"""Which period a usage request lands in — or why it is refused. Pure: no I/O.

A record is accepted only if its timestamp lies in the item's current period and
not more than ``future_tolerance_s`` ahead of now; records before the current period are
refused, except that for ``sum`` prices, during the first ``late_grace_s`` of a period,
records for the previous period are still accepted while its invoice is not finalized.

"The current period" is the one that holds *now* (the subscription's clock). The cached
item metadata knows the period the invoicer last opened; between that period's end and
the invoicer closing it (seconds in real time; until the next invoicer pass under a test
clock) the metadata is one or more periods behind. Then the caller passes the
subscription's ``Schedule`` and the periods are computed from its anchor: the period that
ended is the "previous" one and its invoice does not exist yet, so it is not finalized.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from domain.itemmeta import ItemMeta
from domain.periods import Interval, period_at, period_containing
from infra.errors import InvalidRequest

__all__ = [
    "Calendar",
    "Placement",
    "Schedule",
    "cached_calendar",
    "calendar",
    "check_item",
    "needs_schedule",
    "place",
    "place_each",
]


@dataclass(frozen=True, slots=True)
class Placement:
    period_start: int
    period_end: int


@dataclass(frozen=True, slots=True)
class Schedule:
    """How a subscription's periods are laid out (read from Postgres when needed)."""

    anchor: int
    interval: Interval
    interval_count: int
    cancel_at_period_end: bool


@dataclass(frozen=True, slots=True)
class Calendar:
    """The periods around *now*: where records may land."""

    current: Placement | None  # None: the subscription ended (cancel at period end)
    previous: Placement | None
    previous_open: bool  # the previous period's invoice is not finalized
    following: Placement | None  # the period after the current one, when known


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _when(ts: int) -> str:
    return f"{ts} ({_iso(ts)})"


def check_item(meta: ItemMeta) -> None:
    """Raises InvalidRequest when the item cannot take usage at all."""
    if meta.deleted:
        raise InvalidRequest(
            f"subscription item {meta.item_id} was removed from its subscription",
            param="subscriptionItem",
            code="subscription_item_deleted",
        )
    if meta.status in ("canceled", "incomplete_expired"):
        raise InvalidRequest(
            f"subscription {meta.subscription_id} is {meta.status}; it takes no more usage",
            param="subscriptionItem",
            code="subscription_canceled",
        )
    if meta.meter_event is not None:
        raise InvalidRequest(
            f"subscription item {meta.item_id} bills a meter's usage, not usage records: send"
            f" meter events (POST /v1/billing/meter_events) with eventName"
            f" '{meta.meter_event}' instead",
            param="subscriptionItem",
            code="item_bills_meter",
        )
    if meta.usage_type != "metered":
        raise InvalidRequest(
            f"subscription item {meta.item_id} has a licensed price; usage records need a"
            " metered price (recurring.usageType = 'metered')",
            param="subscriptionItem",
            code="price_not_metered",
        )


def needs_schedule(meta: ItemMeta, timestamps: list[int], now: int) -> bool:
    """True when the cached period alone cannot place these records: the period has ended
    (the invoicer has not rolled it yet) or a record lies past its end."""
    return now >= meta.period_end or any(ts >= meta.period_end for ts in timestamps)


def cached_calendar(meta: ItemMeta) -> Calendar:
    """The periods the cached metadata knows (nothing past its period): ``calendar``
    without a schedule while ``now`` is before the cached period's end. Depends on
    ``meta`` alone, so callers may keep it as long as they keep ``meta``."""
    cached_prev = (
        Placement(meta.prev_period_start, meta.period_start)
        if meta.prev_period_start is not None
        else None
    )
    return Calendar(
        Placement(meta.period_start, meta.period_end), cached_prev, meta.prev_open, None
    )


def calendar(meta: ItemMeta, now: int, schedule: Schedule | None) -> Calendar:
    """The periods around ``now``; without ``schedule`` nothing past the cached period is
    placeable.

    Raises:
        ValueError: ``now`` is past the cached period and no schedule was given.
    """
    if schedule is None:
        if now >= meta.period_end:
            raise ValueError("the cached period has ended: a schedule is needed")
        return cached_calendar(meta)
    cached = Placement(meta.period_start, meta.period_end)
    cached_prev = (
        Placement(meta.prev_period_start, meta.period_start)
        if meta.prev_period_start is not None
        else None
    )
    if now < meta.period_end:
        following = None if schedule.cancel_at_period_end else _next(schedule, meta.period_end)
        return Calendar(cached, cached_prev, meta.prev_open, following)
    if schedule.cancel_at_period_end:
        return Calendar(None, cached, True, None)
    p = period_containing(schedule.anchor, schedule.interval, schedule.interval_count, now)
    prev = period_at(schedule.anchor, schedule.interval, schedule.interval_count, p.index - 1)
    nxt = period_at(schedule.anchor, schedule.interval, schedule.interval_count, p.index + 1)
    # Every period from the cached one on is still un-invoiced.
    return Calendar(
        Placement(p.start, p.end),
        Placement(prev.start, prev.end),
        True,
        Placement(nxt.start, nxt.end),
    )


def _next(schedule: Schedule, start: int) -> Placement:
    p = period_containing(schedule.anchor, schedule.interval, schedule.interval_count, start)
    return Placement(p.start, p.end)


def _place_one(
    meta: ItemMeta,
    cal: Calendar,
    ts: int,
    now: int,
    future_tolerance_s: int,
    late_grace_s: int,
    param: str,
) -> Placement:
    if ts > now + future_tolerance_s:
        raise InvalidRequest(
            f"timestamp {_when(ts)} is more than {future_tolerance_s}s in the future"
            f" (now is {_when(now)})",
            param=param,
            code="timestamp_in_future",
        )
    current = cal.current
    if current is None:
        ended = cal.previous.period_end if cal.previous is not None else meta.period_end
        if (
            cal.previous is not None
            and cal.previous.period_start <= ts < ended
            and _late_ok(meta, cal, now, ended, late_grace_s)
        ):
            return cal.previous
        raise InvalidRequest(
            f"subscription {meta.subscription_id} ended at {_when(ended)}; it takes no usage"
            " after that"
            + ("" if ts >= ended else _late_rule(meta, cal, now, ended, late_grace_s)),
            param=param,
            code="subscription_canceled",
        )
    if current.period_start <= ts < current.period_end:
        return current
    if ts >= current.period_end:
        following = cal.following
        if following is not None and following.period_start <= ts < following.period_end:
            return following
        raise InvalidRequest(
            f"timestamp {_when(ts)} is after the current billing period, which ends at"
            f" {_when(current.period_end)}",
            param=param,
            code="timestamp_after_period",
        )
    previous = cal.previous
    if (
        previous is not None
        and previous.period_start <= ts < previous.period_end
        and _late_ok(meta, cal, now, current.period_start, late_grace_s)
    ):
        return previous
    raise InvalidRequest(
        f"timestamp {_when(ts)} is before the current billing period, which started at"
        f" {_when(current.period_start)}; usage for an earlier period can't be reported"
        + _late_rule(meta, cal, now, current.period_start, late_grace_s),
        param=param,
        code="timestamp_before_period",
    )


def _late_ok(meta: ItemMeta, cal: Calendar, now: int, boundary: int, late_grace_s: int) -> bool:
    return meta.aggregate_usage == "sum" and cal.previous_open and now < boundary + late_grace_s


def _late_rule(meta: ItemMeta, cal: Calendar, now: int, boundary: int, late_grace_s: int) -> str:
    """Why the late-usage grace did not apply, when it might have been expected to."""
    if cal.previous is None:
        return ""
    if now >= boundary + late_grace_s:
        return (
            f" (late usage for the previous period is accepted only during the first"
            f" {late_grace_s}s of the next one)"
        )
    if meta.aggregate_usage != "sum":
        return (
            " (late usage for the previous period is accepted only for prices with"
            " aggregateUsage 'sum')"
        )
    if not cal.previous_open:
        return " (the previous period's invoice is already finalized)"
    return ""


def place_each(
    meta: ItemMeta,
    cal: Calendar,
    timestamps: list[int],
    now: int,
    *,
    future_tolerance_s: int,
    late_grace_s: int,
    params: list[str],
) -> tuple[Placement | None, list[InvalidRequest]]:
    """Place every timestamp; returns the one period they share and every problem found
    (``params[i]`` names timestamp i). All records of one request must share a period."""
    chosen: Placement | None = None
    errors: list[InvalidRequest] = []
    for ts, param in zip(timestamps, params, strict=True):
        try:
            spot = _place_one(meta, cal, ts, now, future_tolerance_s, late_grace_s, param)
        except InvalidRequest as exc:
            errors.append(exc)
            continue
        if chosen is None:
            chosen = spot
        elif spot != chosen:
            errors.append(
                InvalidRequest(
                    f"timestamp {_when(ts)} is in the period starting {_when(spot.period_start)},"
                    f" but earlier records are in the one starting {_when(chosen.period_start)};"
                    " send each period's records in its own request",
                    param=param,
                    code="records_span_periods",
                )
            )
    return chosen, errors


def place(
    meta: ItemMeta,
    timestamps: list[int],
    now: int,
    *,
    future_tolerance_s: int,
    late_grace_s: int,
    params: list[str],
    schedule: Schedule | None = None,
) -> Placement:
    """The one period every timestamp falls in; raises the first problem found."""
    cal = calendar(meta, now, schedule)
    chosen, errors = place_each(
        meta,
        cal,
        timestamps,
        now,
        future_tolerance_s=future_tolerance_s,
        late_grace_s=late_grace_s,
        params=params,
    )
    if errors:
        raise errors[0]
    if chosen is None:
        raise InvalidRequest("no records to place", param=params[0] if params else None)
    return chosen
