"""The amount codec: how a price's amounts are read, stored and shown.

An amount is a non-negative ``Decimal`` of the currency's minor unit, below 10^12, with at
most 12 decimal places. The API names each amount twice, as Stripe does: ``xAmount`` (an
integer of minor units) and ``xAmountDecimal`` (a decimal string of them).

* **Request** — the caller gives at most one of the pair (both is refused, as in Stripe).
  ``unitAmountDecimal`` may be a string or a number; a number is read from its shortest
  decimal form, never from binary, so ``0.2`` is exactly 0.2.
* **Stored** — the one key the value needs: ``xAmount`` when it is whole, ``xAmountDecimal``
  when it is not, the other ``None``. :func:`parse_amount_pair` reads it back, so a stored
  document is a valid request.
* **Shown** — both keys, a function of the value only: ``xAmountDecimal`` is always the
  plain decimal string (trailing zeros dropped: ``"0.200"`` → ``"0.2"``, ``5`` → ``"5"``),
  ``xAmount`` the integer when the value is whole, else ``None``. So ``unitAmount: 5``
  reads back ``unitAmount: 5, unitAmountDecimal: "5"`` and ``unitAmountDecimal: "0.2"``
  reads back ``unitAmount: null, unitAmountDecimal: "0.2"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = [
    "MAX_AMOUNT",
    "MAX_DECIMAL_PLACES",
    "MAX_DECIMAL_TEXT",
    "PriceDefinitionError",
    "decimal_str",
    "parse_amount_pair",
    "shown",
    "shown_amount",
    "stored_amount",
]

MAX_AMOUNT = 10**12  # exclusive bound on unit and flat amounts, in minor units
MAX_DECIMAL_PLACES = 12
MAX_DECIMAL_TEXT = 64  # characters of a decimal string (the longest valid one has 25)
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class PriceDefinitionError(ValueError):
    """A price definition the API must refuse; ``param`` names the offending field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a refusal's message, cut to ``limit`` characters: the message
    names the value, it does not echo a megabyte of it back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_amount_pair(
    data: Mapping[str, Any], int_key: str, decimal_key: str, prefix: str = ""
) -> Decimal | None:
    """Read ``xAmount`` / ``xAmountDecimal``: at most one of them, None if neither.

    Raises:
        PriceDefinitionError: naming ``prefix + key`` for both keys, a non-integer
            ``xAmount``, a malformed decimal, a negative or too large amount, or more than
            12 decimal places.
    """
    whole, fractional = data.get(int_key), data.get(decimal_key)
    if whole is not None and fractional is not None:
        raise PriceDefinitionError(
            f"give either {int_key} or {decimal_key}, not both", prefix + decimal_key
        )
    if whole is not None:
        return _parse_whole(whole, prefix + int_key, decimal_key)
    if fractional is not None:
        return _parse_decimal(fractional, prefix + decimal_key)
    return None


def stored_amount(amount: Decimal, int_key: str, decimal_key: str) -> dict[str, Any]:
    """The stored form: the one key the value needs, the other ``None``."""
    if amount == amount.to_integral_value():
        return {int_key: int(amount), decimal_key: None}
    return {int_key: None, decimal_key: decimal_str(amount)}


def shown_amount(amount: Decimal | None, int_key: str, decimal_key: str) -> dict[str, Any]:
    """The API form: the decimal string always, the integer when the value is whole."""
    if amount is None:
        return {int_key: None, decimal_key: None}
    whole = int(amount) if amount == amount.to_integral_value() else None
    return {int_key: whole, decimal_key: decimal_str(amount)}


def decimal_str(amount: Decimal) -> str:
    """Plain decimal notation without trailing zeros: ``"0.2"``, ``"5"``, never ``"5E+1"``."""
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _parse_whole(value: Any, param: str, decimal_key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PriceDefinitionError(
            f"{param} must be a whole number of minor units, got {shown(value)}; "
            f"use {decimal_key} for fractions",
            param,
        )
    return _check_bounds(Decimal(value), param)


def _parse_decimal(value: Any, param: str) -> Decimal:
    """Parse a string or number exactly (floats via their shortest repr, never binary)."""
    amount: Decimal | None = None
    if isinstance(value, bool):
        amount = None
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float | Decimal):
        candidate = Decimal(repr(value)) if isinstance(value, float) else value
        amount = candidate if candidate.is_finite() else None
    elif isinstance(value, str) and len(value) > MAX_DECIMAL_TEXT:
        raise PriceDefinitionError(
            f"{param} may have at most {MAX_DECIMAL_TEXT} characters, got {shown(value)}", param
        )
    elif isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        amount = Decimal(value)
    if amount is None:
        raise PriceDefinitionError(
            f"{param} must be a decimal number of minor units such as '0.2', got {shown(value)}",
            param,
        )
    amount = _check_bounds(amount, param)
    if amount == 0:
        return Decimal(0)
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):  # unreachable: only finite values get here
        raise PriceDefinitionError(f"{param} must be finite", param)
    text = "".join(map(str, digits))
    drop = min(len(text) - len(text.rstrip("0")), max(-exponent, 0))  # fractional zeros only
    if -(exponent + drop) > MAX_DECIMAL_PLACES:
        raise PriceDefinitionError(
            f"{param} may have at most {MAX_DECIMAL_PLACES} decimal places, got {shown(value)}",
            param,
        )
    return Decimal((sign, digits[: len(digits) - drop], exponent + drop))


def _check_bounds(amount: Decimal, param: str) -> Decimal:
    if amount < 0:
        raise PriceDefinitionError(f"{param} must be >= 0, got {shown(amount)}", param)
    if amount >= MAX_AMOUNT:
        raise PriceDefinitionError(
            f"{param} must be less than 10^12 minor units, got {shown(amount)}", param
        )
    return amount
