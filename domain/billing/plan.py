"""What a period end does to a subscription, decided without I/O.

When the invoicer reaches a subscription's period end (or its final invoice is owed), one of
four transitions applies, and it fixes everything written for it: the invoice's billing
reason, period and times, whether licensed items are billed in advance for the next period,
and the subscription's row afterwards.

==================  =========================================================================
``RENEW``           the period ends, the next one starts; licensed items billed in advance
``CATCH_UP``        canceled after this period's end (the clock ran ahead of the invoicer):
                    bill and advance as ``RENEW``, the final invoice comes with the next
``END``             ``cancelAtPeriodEnd``: the last period's invoice, then ``canceled``
``FINAL``           canceled now (or by dunning): the usage up to the cancellation
==================  =========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from domain.billing.rules import InvoiceRules
from domain.periods import Interval, Period, period_at

__all__ = ["PeriodPlan", "PeriodTransition", "SubscriptionPeriod", "plan_period"]


class PeriodTransition(Enum):
    RENEW = "renew"
    CATCH_UP = "catch_up"
    END = "end"
    FINAL = "final"

    @property
    def advances(self) -> bool:
        """The subscription moves on to its next period (and pays its licensed items)."""
        return self in (PeriodTransition.RENEW, PeriodTransition.CATCH_UP)

    @property
    def event_type(self) -> str:
        """The event the subscription's change is announced with."""
        if self is PeriodTransition.END:
            return "customer.subscription.deleted"
        return "customer.subscription.updated"


@dataclass(frozen=True, slots=True)
class SubscriptionPeriod:
    """The subscription columns a period end reads, and writes back (``plan.after``)."""

    status: str
    anchor: int
    interval: Interval
    interval_count: int
    period_index: int
    current_period_start: int
    current_period_end: int
    cancel_at_period_end: bool
    final_invoice_pending: bool
    canceled_at: int | None
    ended_at: int | None
    clocked: bool  # on a test clock: every step is stamped with the simulated time


@dataclass(frozen=True, slots=True)
class PeriodPlan:
    transition: PeriodTransition
    billing_reason: str  # the invoice's: subscription_cycle | subscription_cancel
    start: int  # the invoice's period
    end: int
    finalize_at: int
    created: int
    next_period: Period  # where licensed items are billed in advance, when it advances
    after: SubscriptionPeriod  # the subscription's row once the invoice is written


def _transition(sub: SubscriptionPeriod) -> PeriodTransition:
    if sub.final_invoice_pending:
        assert sub.ended_at is not None, "a final invoice is owed only once ended"
        if sub.ended_at > sub.current_period_end:
            return PeriodTransition.CATCH_UP
        return PeriodTransition.FINAL
    return PeriodTransition.END if sub.cancel_at_period_end else PeriodTransition.RENEW


def plan_period(sub: SubscriptionPeriod, rules: InvoiceRules, now: int) -> PeriodPlan:
    """The plan for ``sub``'s ended period (or, ``FINAL``, its usage so far); ``now`` is the
    real time (a test clock's subscription is stamped with its simulated times instead)."""
    transition = _transition(sub)
    start = sub.current_period_start
    end = sub.current_period_end
    if transition is PeriodTransition.FINAL:
        assert sub.ended_at is not None
        end = max(sub.ended_at, start)
    nxt = period_at(sub.anchor, sub.interval, sub.interval_count, sub.period_index + 1)
    if transition is PeriodTransition.FINAL:
        after = replace(sub, final_invoice_pending=False)
    elif transition is PeriodTransition.END:
        canceled_at = end if sub.canceled_at is None else sub.canceled_at
        after = replace(sub, status="canceled", canceled_at=canceled_at, ended_at=end)
    else:
        after = replace(
            sub,
            period_index=nxt.index,
            current_period_start=nxt.start,
            current_period_end=nxt.end,
        )
    return PeriodPlan(
        transition,
        "subscription_cancel" if transition is PeriodTransition.FINAL else "subscription_cycle",
        start,
        end,
        end if sub.clocked else end + rules.finalization_grace_s,
        end if sub.clocked else now,
        nxt,
        after,
    )
