"""When an invoice's payment is attempted and what each attempt leads to, decided without I/O.

Automatic attempts follow ``InvoiceRules.retry_days``, counted from the previous scheduled
attempt (3, 5, 7, 6: retries 3, 8, 15 and 21 days after the first failure). Each automatic
failure makes the subscription ``past_due``; the failure after the last retry makes it
``InvoiceRules.final_action`` (``unpaid``, or ``canceled``). A manual attempt runs now,
whatever the schedule, and a manual failure leaves the schedule and the subscription as they
were. Under a test clock an attempt is stamped with its scheduled time, so a clock advanced
across several retries leaves the trail real time would.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from domain.billing.rules import InvoiceRules

__all__ = ["AttemptPlan", "AttemptResult", "Standing", "attempt_time", "plan_attempt", "worst"]

DAY = 86_400

# How bad a subscription's standing after failures is; the worst of a batch wins.
_SEVERITY = {"past_due": 1, "unpaid": 2, "canceled": 3}


class AttemptResult(Enum):
    PAID = "paid"
    RETRY = "retry"  # an automatic attempt failed; the next one is scheduled
    FINAL = "final"  # the last automatic attempt failed: the final action applies
    DECLINED = "declined"  # a manual attempt failed: nothing else changes


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    result: AttemptResult
    auto_attempt_count: int  # after this attempt
    next_payment_attempt: int | None  # after this attempt
    standing: str | None  # the subscription status the failure calls for

    @property
    def paid(self) -> bool:
        return self.result is AttemptResult.PAID


class Standing(NamedTuple):
    """A subscription's new status after failures, when and from which period it holds."""

    status: str
    at: int
    period_start: int


def attempt_time(
    scheduled: int | None, frozen_time: int | None, now: int, *, manual: bool
) -> int | None:
    """When an open invoice's attempt happens now, or None when none is due: a manual one
    at the (clock's) current time, an automatic one once scheduled — at the real time, or
    under a test clock at the scheduled time."""
    clock_now = now if frozen_time is None else frozen_time
    if manual:
        return clock_now
    if scheduled is None or scheduled > clock_now:
        return None
    return clock_now if frozen_time is None else scheduled


def plan_attempt(
    succeeded: bool,
    auto_attempt_count: int,
    next_payment_attempt: int | None,
    rules: InvoiceRules,
    *,
    manual: bool,
) -> AttemptPlan:
    """What one attempt on an invoice leads to, given its counters before the attempt."""
    if succeeded:
        return AttemptPlan(AttemptResult.PAID, auto_attempt_count, None, None)
    if manual:
        return AttemptPlan(AttemptResult.DECLINED, auto_attempt_count, next_payment_attempt, None)
    if auto_attempt_count < len(rules.retry_days):
        assert next_payment_attempt is not None, "an automatic attempt was scheduled"
        return AttemptPlan(
            AttemptResult.RETRY,
            auto_attempt_count + 1,
            next_payment_attempt + rules.retry_days[auto_attempt_count] * DAY,
            "past_due",
        )
    return AttemptPlan(AttemptResult.FINAL, auto_attempt_count + 1, None, rules.final_action)


def worst(current: Standing | None, new: Standing) -> Standing:
    """The standing a subscription ends a batch with: the most severe, the first on ties."""
    if current is None or _SEVERITY[new.status] > _SEVERITY[current.status]:
        return new
    return current
