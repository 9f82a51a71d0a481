"""What a period end does to a subscription (domain.billing.plan), without a database."""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.billing.plan import PeriodTransition, SubscriptionPeriod, plan_period
from domain.billing.rules import InvoiceRules
from domain.periods import INTERVALS, Interval, period_at

SETTINGS = settings(database=None, max_examples=300)
RULES = InvoiceRules(finalization_grace_s=3600, retry_days=(3, 5, 7, 6), final_action="unpaid")
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
NOW = T0 + 40 * 86_400


def sub_at(
    index: int = 0,
    *,
    anchor: int = T0,
    interval: Interval = "month",
    count: int = 1,
    **fields: object,
) -> SubscriptionPeriod:
    period = period_at(anchor, interval, count, index)
    sub = SubscriptionPeriod(
        status="active",
        anchor=anchor,
        interval=interval,
        interval_count=count,
        period_index=index,
        current_period_start=period.start,
        current_period_end=period.end,
        cancel_at_period_end=False,
        final_invoice_pending=False,
        canceled_at=None,
        ended_at=None,
        clocked=False,
    )
    return replace(sub, **fields)  # type: ignore[arg-type]


def test_a_period_end_renews_and_bills_the_next_period_in_advance() -> None:
    sub = sub_at()
    plan = plan_period(sub, RULES, NOW)
    nxt = period_at(T0, "month", 1, 1)
    assert plan.transition is PeriodTransition.RENEW
    assert plan.transition.advances
    assert plan.billing_reason == "subscription_cycle"
    assert (plan.start, plan.end) == (sub.current_period_start, sub.current_period_end)
    assert plan.next_period == nxt
    assert plan.after == replace(
        sub, period_index=1, current_period_start=nxt.start, current_period_end=nxt.end
    )
    assert plan.transition.event_type == "customer.subscription.updated"


def test_on_the_real_clock_the_draft_waits_for_the_grace_and_is_created_now() -> None:
    plan = plan_period(sub_at(), RULES, NOW)
    assert plan.finalize_at == plan.end + RULES.finalization_grace_s
    assert plan.created == NOW


def test_under_a_test_clock_every_step_is_stamped_with_the_period_end() -> None:
    plan = plan_period(sub_at(clocked=True), RULES, NOW)
    assert plan.finalize_at == plan.created == plan.end


def test_cancel_at_period_end_ends_the_subscription_without_billing_ahead() -> None:
    sub = sub_at(2, cancel_at_period_end=True)
    plan = plan_period(sub, RULES, NOW)
    assert plan.transition is PeriodTransition.END
    assert not plan.transition.advances
    assert plan.billing_reason == "subscription_cycle"
    assert plan.end == sub.current_period_end
    assert plan.after == replace(
        sub, status="canceled", canceled_at=sub.current_period_end, ended_at=sub.current_period_end
    )
    assert plan.transition.event_type == "customer.subscription.deleted"


def test_ending_at_period_end_keeps_an_earlier_cancellation_time() -> None:
    sub = sub_at(cancel_at_period_end=True, canceled_at=T0 + 5)
    assert plan_period(sub, RULES, NOW).after.canceled_at == T0 + 5


def test_canceled_now_bills_the_usage_up_to_the_cancellation_on_a_final_invoice() -> None:
    start = period_at(T0, "month", 1, 1).start
    sub = sub_at(1, status="canceled", final_invoice_pending=True, ended_at=start + 100)
    plan = plan_period(sub, RULES, NOW)
    assert plan.transition is PeriodTransition.FINAL
    assert plan.billing_reason == "subscription_cancel"
    assert (plan.start, plan.end) == (start, start + 100)
    assert plan.after == replace(sub, final_invoice_pending=False)
    assert plan.transition.event_type == "customer.subscription.updated"


def test_a_final_invoice_never_ends_before_its_period_starts() -> None:
    sub = sub_at(1, status="canceled", final_invoice_pending=True)
    sub = replace(sub, ended_at=sub.current_period_start - 50)
    plan = plan_period(sub, RULES, NOW)
    assert plan.transition is PeriodTransition.FINAL
    assert plan.end == plan.start


def test_canceled_after_the_period_end_bills_the_period_first_and_keeps_the_final_owed() -> None:
    sub = sub_at(status="canceled", final_invoice_pending=True, cancel_at_period_end=True)
    sub = replace(sub, ended_at=sub.current_period_end + 10)
    plan = plan_period(sub, RULES, NOW)
    assert plan.transition is PeriodTransition.CATCH_UP
    assert plan.transition.advances
    assert plan.billing_reason == "subscription_cycle"
    assert plan.end == sub.current_period_end
    assert plan.after.final_invoice_pending
    assert plan.after.current_period_start == sub.current_period_end
    # The next plan is the final invoice, for the usage up to the cancellation.
    final = plan_period(plan.after, RULES, NOW)
    assert final.transition is PeriodTransition.FINAL
    assert (final.start, final.end) == (sub.current_period_end, sub.current_period_end + 10)
    assert not final.after.final_invoice_pending


subscriptions = st.builds(
    sub_at,
    st.integers(0, 40),
    anchor=st.integers(0, 2**32),
    interval=st.sampled_from(INTERVALS),
    count=st.integers(1, 3),
    cancel_at_period_end=st.booleans(),
    clocked=st.booleans(),
)


@given(subscriptions, st.data())
@SETTINGS
def test_every_plan_bills_inside_the_current_period_and_keeps_the_terms(
    sub: SubscriptionPeriod, data: st.DataObject
) -> None:
    if data.draw(st.booleans()):
        ended = data.draw(st.integers(sub.current_period_start - 100, sub.current_period_end + 100))
        sub = replace(sub, status="canceled", final_invoice_pending=True, ended_at=ended)
    plan = plan_period(sub, RULES, NOW)
    assert plan.start == sub.current_period_start
    assert plan.start <= plan.end
    assert plan.end <= sub.current_period_end
    assert plan.finalize_at >= plan.end
    assert (plan.billing_reason == "subscription_cancel") == (
        plan.transition is PeriodTransition.FINAL
    )
    after = plan.after
    fixed = ("anchor", "interval", "interval_count", "cancel_at_period_end", "clocked")
    assert all(getattr(after, f) == getattr(sub, f) for f in fixed)
    if plan.transition.advances:
        assert after.period_index == sub.period_index + 1
        assert after.current_period_start == sub.current_period_end
        assert (after.current_period_start, after.current_period_end) == (
            plan.next_period.start,
            plan.next_period.end,
        )
    else:
        assert after.current_period_start == sub.current_period_start
        assert after.status == "canceled"
        assert not after.final_invoice_pending


@given(subscriptions.filter(lambda s: not s.cancel_at_period_end), st.integers(1, 30))
@SETTINGS
def test_renewals_chain_into_contiguous_periods(sub: SubscriptionPeriod, n: int) -> None:
    bounds = []
    for _ in range(n):
        plan = plan_period(sub, RULES, NOW)
        assert plan.transition is PeriodTransition.RENEW
        bounds.append((plan.start, plan.end))
        sub = plan.after
    assert all(a[1] == b[0] for a, b in pairwise(bounds))
    assert bounds == [
        (p.start, p.end)
        for p in (
            period_at(sub.anchor, sub.interval, sub.interval_count, i)
            for i in range(sub.period_index - n, sub.period_index)
        )
    ]
