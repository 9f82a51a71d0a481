"""When a payment is attempted and what each attempt leads to (domain.billing.retries)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.billing.retries import (
    DAY,
    AttemptResult,
    Standing,
    attempt_time,
    plan_attempt,
    worst,
)
from domain.billing.rules import InvoiceRules

SETTINGS = settings(database=None, max_examples=300)
RULES = InvoiceRules(finalization_grace_s=3600, retry_days=(3, 5, 7, 6), final_action="unpaid")
T = 1_767_225_600


def test_an_automatic_attempt_waits_for_its_schedule() -> None:
    assert attempt_time(None, None, T, manual=False) is None
    assert attempt_time(T + 1, None, T, manual=False) is None
    assert attempt_time(T - 5, None, T, manual=False) == T  # at the real time
    assert attempt_time(T + 1, T, T + 99, manual=False) is None  # the clock's time counts


def test_under_a_test_clock_an_attempt_is_stamped_with_its_scheduled_time() -> None:
    assert attempt_time(T - 5, T, T + 99, manual=False) == T - 5


def test_a_manual_attempt_runs_now_whatever_the_schedule() -> None:
    assert attempt_time(None, None, T, manual=True) == T
    assert attempt_time(T + 10 * DAY, None, T, manual=True) == T
    assert attempt_time(T + 10 * DAY, T - 7, T, manual=True) == T - 7


def test_a_success_pays_and_clears_the_schedule() -> None:
    plan = plan_attempt(True, 2, T, RULES, manual=False)
    assert plan.result is AttemptResult.PAID and plan.paid
    assert (plan.auto_attempt_count, plan.next_payment_attempt, plan.standing) == (2, None, None)


def test_a_manual_failure_leaves_schedule_and_subscription_as_they_were() -> None:
    plan = plan_attempt(False, 1, T + DAY, RULES, manual=True)
    assert plan.result is AttemptResult.DECLINED and not plan.paid
    assert (plan.auto_attempt_count, plan.next_payment_attempt, plan.standing) == (1, T + DAY, None)


def test_failures_retry_3_8_15_and_21_days_after_the_first_then_take_the_final_action() -> None:
    auto, scheduled, seen = 0, T, []
    for _ in range(4):
        plan = plan_attempt(False, auto, scheduled, RULES, manual=False)
        assert plan.result is AttemptResult.RETRY
        assert plan.standing == "past_due"
        auto, scheduled = plan.auto_attempt_count, plan.next_payment_attempt
        assert scheduled is not None
        seen.append((scheduled - T) // DAY)
    assert seen == [3, 8, 15, 21]
    final = plan_attempt(False, auto, scheduled, RULES, manual=False)
    assert final.result is AttemptResult.FINAL
    assert (final.auto_attempt_count, final.next_payment_attempt) == (5, None)
    assert final.standing == "unpaid"


@given(
    st.lists(st.integers(1, 30), max_size=6),
    st.sampled_from(["unpaid", "canceled"]),
    st.integers(0, 2**32),
)
@SETTINGS
def test_every_schedule_retries_once_per_day_count_then_ends(
    days: list[int], action: str, first: int
) -> None:
    rules = InvoiceRules(0, tuple(days), action)
    auto, scheduled = 0, first
    results = []
    while True:
        plan = plan_attempt(False, auto, scheduled, rules, manual=False)
        results.append(plan.result)
        assert plan.auto_attempt_count == auto + 1
        if plan.result is AttemptResult.FINAL:
            assert plan.standing == action and plan.next_payment_attempt is None
            break
        assert plan.next_payment_attempt is not None
        auto, scheduled = plan.auto_attempt_count, plan.next_payment_attempt
        assert scheduled == first + sum(days[:auto]) * DAY
    assert results == [AttemptResult.RETRY] * len(days) + [AttemptResult.FINAL]


def test_the_worst_standing_of_a_batch_wins_and_the_first_on_ties() -> None:
    past_due, unpaid = Standing("past_due", T, 0), Standing("unpaid", T + 1, 0)
    assert worst(None, past_due) == past_due
    assert worst(past_due, unpaid) == unpaid
    assert worst(unpaid, past_due) == unpaid
    assert worst(past_due, Standing("past_due", T + 9, 0)) == past_due
    assert worst(unpaid, Standing("canceled", T + 2, 0)).status == "canceled"
