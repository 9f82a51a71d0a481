"""The sandbox card network: which test payment method does what. Pure: no I/O.

Test methods are given by their token (``pm_card_visa``) or card number
(``4242424242424242``); attaching one creates a ``pm_…`` payment method of that kind.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ChargeOutcome", "TestMethod", "charge_outcome", "known_methods", "resolve_test_method"]


@dataclass(frozen=True, slots=True)
class TestMethod:
    kind: str
    number: str
    brand: str
    decline_code: str | None  # None: charges succeed
    decline_message: str | None

    @property
    def last4(self) -> str:
        return self.number[-4:]


_METHODS = (
    TestMethod("pm_card_visa", "4242424242424242", "visa", None, None),
    TestMethod("pm_card_mastercard", "5555555555554444", "mastercard", None, None),
    TestMethod("pm_card_amex", "378282246310005", "amex", None, None),
    TestMethod(
        "pm_card_chargeDeclined",
        "4000000000000002",
        "visa",
        "generic_decline",
        "Your card was declined.",
    ),
    TestMethod(
        "pm_card_chargeDeclinedInsufficientFunds",
        "4000000000009995",
        "visa",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    TestMethod(
        "pm_card_chargeCustomerFail",
        "4000000000000341",
        "visa",
        "card_declined",
        "Your card was declined.",
    ),
    TestMethod(
        "pm_card_chargeDeclinedExpiredCard",
        "4000000000000069",
        "visa",
        "expired_card",
        "Your card has expired.",
    ),
)
_BY_KEY = {m.kind: m for m in _METHODS} | {m.number: m for m in _METHODS}


def resolve_test_method(value: str) -> TestMethod | None:
    """The test method for a token or card number (spaces and dashes ignored), else None."""
    return _BY_KEY.get(value) or _BY_KEY.get(value.replace(" ", "").replace("-", ""))


def known_methods() -> list[str]:
    return [m.kind for m in _METHODS]


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    succeeded: bool
    failure_code: str | None
    failure_message: str | None


def charge_outcome(kind: str | None) -> ChargeOutcome:
    """What charging a method of this kind does; no method at all fails the charge."""
    method = _BY_KEY.get(kind) if kind else None
    if method is None:
        return ChargeOutcome(
            False, "no_payment_method", "The customer has no default payment method."
        )
    if method.decline_code is None:
        return ChargeOutcome(True, None, None)
    return ChargeOutcome(False, method.decline_code, method.decline_message)
