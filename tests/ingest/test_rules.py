"""Timestamp placement: current period only, ≤ 5 min ahead, late grace for sum."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.itemmeta import ItemMeta
from domain.periods import INTERVALS, period_at, period_containing
from infra.errors import InvalidRequest
from ingest.rules import (
    Placement,
    Schedule,
    calendar,
    check_item,
    needs_schedule,
    place,
    place_each,
)

DAY = 86_400
ANCHOR = int(datetime(2026, 1, 31, 12, tzinfo=UTC).timestamp())  # month ends clamp
MONTHLY = Schedule(ANCHOR, "month", 1, cancel_at_period_end=False)
P0, P1, P2 = (period_at(ANCHOR, "month", 1, k) for k in range(3))
TOL, GRACE = 300, 300


def meta(index: int = 1, **changes: Any) -> ItemMeta:
    """An item whose cached period is period ``index`` of MONTHLY."""
    p = period_at(ANCHOR, "month", 1, index)
    prev = period_at(ANCHOR, "month", 1, index - 1).start if index else None
    base = ItemMeta(
        pk=7,
        account_id="acct_1",
        livemode=False,
        item_id="si_1",
        subscription_id="sub_1",
        status="active",
        deleted=False,
        usage_type="metered",
        aggregate_usage="sum",
        period_start=p.start,
        period_end=p.end,
        prev_period_start=prev,
        prev_open=index > 0,
        frozen_time=None,
        version=1,
    )
    return dataclasses.replace(base, **changes)


def put(m: ItemMeta, ts: int | list[int], now: int, schedule: Schedule | None = None) -> Placement:
    stamps = ts if isinstance(ts, list) else [ts]
    return place(
        m,
        stamps,
        now,
        future_tolerance_s=TOL,
        late_grace_s=GRACE,
        params=[f"records[{i}].timestamp" for i in range(len(stamps))],
        schedule=schedule,
    )


def refused(
    m: ItemMeta, ts: int | list[int], now: int, schedule: Schedule | None = None
) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        put(m, ts, now, schedule)
    return caught.value


def test_a_record_in_the_current_period_lands_there() -> None:
    m = meta()
    assert put(m, P1.start, P1.start + 10) == Placement(P1.start, P1.end)
    assert put(m, P1.end - 1, P1.end - 1) == Placement(P1.start, P1.end)


def test_a_backdated_record_names_the_period_start() -> None:
    m = meta(prev_open=False)
    err = refused(m, P1.start - 1, P1.start + 3600)
    assert err.param == "records[0].timestamp"
    assert err.code == "timestamp_before_period"
    assert str(P1.start) in err.message
    assert datetime.fromtimestamp(P1.start, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") in err.message
    assert "before the current billing period" in err.message


def test_more_than_five_minutes_ahead_is_refused_and_five_minutes_is_not() -> None:
    m = meta()
    now = P1.start + DAY
    assert put(m, now + TOL, now).period_start == P1.start
    err = refused(m, now + TOL + 1, now)
    assert err.code == "timestamp_in_future" and "300s in the future" in err.message


def test_late_usage_for_sum_during_the_grace_while_the_invoice_is_draft() -> None:
    m = meta()
    assert put(m, P1.start - 60, P1.start + GRACE - 1) == Placement(P0.start, P0.end)
    assert put(m, P0.start, P1.start) == Placement(P0.start, P0.end)


@pytest.mark.parametrize("aggregate", ["max", "last_during_period", "last_ever"])
def test_no_late_grace_for_max_or_last(aggregate: str) -> None:
    err = refused(meta(aggregate_usage=aggregate), P1.start - 60, P1.start + 10)
    assert err.code == "timestamp_before_period"
    assert "only for prices with aggregateUsage 'sum'" in err.message


def test_no_late_grace_once_the_invoice_is_finalized_or_the_grace_is_over() -> None:
    err = refused(meta(prev_open=False), P1.start - 60, P1.start + 10)
    assert "already finalized" in err.message
    err = refused(meta(), P1.start - 60, P1.start + GRACE)
    assert f"first {GRACE}s" in err.message


def test_no_late_grace_before_the_previous_period() -> None:
    err = refused(meta(), P0.start - 1, P1.start + 10)
    assert err.code == "timestamp_before_period"


def test_a_batch_must_stay_in_one_period() -> None:
    err = refused(meta(), [P1.start + 5, P1.start - 5], P1.start + 10)
    assert err.code == "records_span_periods" and err.param == "records[1].timestamp"


def test_every_bad_record_of_a_batch_is_reported() -> None:
    m = meta(prev_open=False)
    now = P1.start + DAY
    stamps = [now, P1.start - 1, now, now + TOL + 1]
    params = [f"records[{i}].timestamp" for i in range(len(stamps))]
    spot, errors = place_each(
        m,
        calendar(m, now, None),
        stamps,
        now,
        future_tolerance_s=TOL,
        late_grace_s=GRACE,
        params=params,
    )
    assert spot == Placement(P1.start, P1.end)
    assert [e.param for e in errors] == ["records[1].timestamp", "records[3].timestamp"]


def test_a_record_just_past_the_period_end_lands_in_the_next_period() -> None:
    m = meta()
    now = P1.end - 60
    assert needs_schedule(m, [P1.end + 10], now)
    assert put(m, P1.end + 10, now, MONTHLY) == Placement(P2.start, P2.end)
    err = refused(m, P1.end + 10, now)
    assert err.code == "timestamp_after_period" and str(P1.end) in err.message


def test_after_the_period_ended_but_before_the_invoicer_rolled_it() -> None:
    m = meta()  # cached: period 1, which has ended
    now = P1.end + 120
    assert needs_schedule(m, [now], now)
    with pytest.raises(ValueError):
        calendar(m, now, None)
    assert put(m, now, now, MONTHLY) == Placement(P2.start, P2.end)
    # The ended period has no invoice yet, so it is open: sum takes late usage...
    assert put(m, P1.end - 1, now, MONTHLY) == Placement(P1.start, P1.end)
    # ...max does not, and neither does sum after the grace.
    err = refused(meta(aggregate_usage="max"), P1.end - 1, now, MONTHLY)
    assert str(P2.start) in err.message
    refused(m, P1.end - 1, P1.end + GRACE, MONTHLY)


def test_a_clock_several_periods_ahead_places_records_in_the_period_of_now() -> None:
    now = P2.end + 3 * DAY
    p3 = period_containing(ANCHOR, "month", 1, now)
    assert put(meta(), now, now, MONTHLY) == Placement(p3.start, p3.end)
    refused(meta(), P1.start + 5, now, MONTHLY)


def test_a_subscription_ending_at_period_end_takes_only_late_usage() -> None:
    ending = dataclasses.replace(MONTHLY, cancel_at_period_end=True)
    now = P1.end + 60
    assert put(meta(), P1.end - 1, now, ending) == Placement(P1.start, P1.end)
    err = refused(meta(), now, now, ending)
    assert err.code == "subscription_canceled" and str(P1.end) in err.message
    assert refused(meta(), P1.end - 1, P1.end + GRACE, ending).code == "subscription_canceled"
    # Before the end, nothing past it is placeable.
    assert refused(meta(), P1.end + 1, P1.end - 10, ending).code == "timestamp_after_period"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"status": "canceled"}, "subscription_canceled"),
        ({"status": "incomplete_expired"}, "subscription_canceled"),
        ({"deleted": True}, "subscription_item_deleted"),
        ({"usage_type": "licensed"}, "price_not_metered"),
    ],
)
def test_items_that_take_no_usage(changes: dict[str, Any], code: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_item(meta(**changes))
    assert caught.value.code == code and caught.value.param == "subscriptionItem"


def test_items_that_take_usage() -> None:
    for status in ("active", "past_due", "unpaid"):
        check_item(meta(status=status))


@given(
    interval=st.sampled_from(INTERVALS),
    count=st.integers(1, 3),
    index=st.integers(0, 30),
    offset=st.integers(-400 * DAY, 400 * DAY),
    ahead=st.integers(0, 40 * DAY),
    aggregate=st.sampled_from(["sum", "max", "last_during_period", "last_ever"]),
    prev_open=st.booleans(),
    ending=st.booleans(),
)
def test_placement_is_always_a_period_holding_the_timestamp(
    interval: Any,
    count: int,
    index: int,
    offset: int,
    ahead: int,
    aggregate: str,
    prev_open: bool,
    ending: bool,
) -> None:
    """Whatever the clock and the record: either the record's period comes back (one that
    holds it, and is now's period or — late, for sum only — the one before), or a 400
    naming the timestamp. Never anything else."""
    schedule = Schedule(ANCHOR, interval, count, cancel_at_period_end=ending)
    cached = period_at(ANCHOR, interval, count, index)
    prev = period_at(ANCHOR, interval, count, index - 1).start if index else None
    m = meta(
        period_start=cached.start,
        period_end=cached.end,
        prev_period_start=prev,
        prev_open=prev_open and index > 0,
        aggregate_usage=aggregate,
    )
    now = cached.start + ahead
    ts = max(now + offset, 0)
    try:
        spot = put(m, ts, now, schedule)
    except InvalidRequest as exc:
        assert exc.param == "records[0].timestamp"
        assert exc.message
        return
    assert spot.period_start <= ts < spot.period_end
    assert ts <= now + TOL
    current = period_containing(ANCHOR, interval, count, max(now, cached.start))
    if spot.period_start < current.start:  # late usage
        assert aggregate == "sum"
        assert now < current.start + GRACE
        assert spot.period_end == current.start
    elif spot.period_start > current.start:  # just ahead, within the tolerance
        assert spot.period_start == current.end and not ending
