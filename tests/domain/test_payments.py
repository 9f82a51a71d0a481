"""The sandbox card network: every test method, by token and
by card number, and what charging it does."""

from __future__ import annotations

import pytest

from domain.payments import charge_outcome, known_methods, resolve_test_method

# (token, card number, succeeds, decline code) as the API reference lists them
TEST_METHODS = [
    ("pm_card_visa", "4242424242424242", True, None),
    ("pm_card_chargeDeclined", "4000000000000002", False, "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "4000000000009995", False, "insufficient_funds"),
    ("pm_card_chargeCustomerFail", "4000000000000341", False, "card_declined"),
    ("pm_card_chargeDeclinedExpiredCard", "4000000000000069", False, "expired_card"),
]


@pytest.mark.parametrize(("token", "number", "succeeds", "code"), TEST_METHODS)
def test_token_and_card_number_name_the_same_method(
    token: str, number: str, succeeds: bool, code: str | None
) -> None:
    by_token, by_number = resolve_test_method(token), resolve_test_method(number)
    assert by_token is not None and by_token == by_number
    assert by_token.kind == token and by_token.last4 == number[-4:]
    outcome = charge_outcome(by_token.kind)
    assert outcome.succeeded is succeeds
    assert outcome.failure_code == code
    assert (outcome.failure_message is None) is succeeds


@pytest.mark.parametrize("written", ["4242 4242 4242 4242", "4242-4242-4242-4242"])
def test_card_numbers_may_be_grouped(written: str) -> None:
    method = resolve_test_method(written)
    assert method is not None and method.kind == "pm_card_visa"


@pytest.mark.parametrize("value", ["pm_card_unknown", "4111111111111111", "", "pm_card_Visa"])
def test_unknown_methods_resolve_to_none(value: str) -> None:
    assert resolve_test_method(value) is None


@pytest.mark.parametrize("kind", [None, "", "pm_card_unknown"])
def test_charging_without_a_known_method_fails(kind: str | None) -> None:
    outcome = charge_outcome(kind)
    assert not outcome.succeeded
    assert outcome.failure_code == "no_payment_method"


def test_every_known_method_has_an_outcome() -> None:
    kinds = known_methods()
    assert {t for t, *_ in TEST_METHODS} <= set(kinds)
    for kind in kinds:
        method = resolve_test_method(kind)
        assert method is not None
        assert resolve_test_method(method.number) == method
        assert charge_outcome(kind).succeeded is (method.decline_code is None)
