"""Currencies: the ISO 4217 minor unit every amount is counted in, and human display.

Babel's CLDR data gives the digits, corrected where CLDR departs from ISO 4217; codes ISO
gives no minor unit (metals, funds, testing codes) are refused.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal, Inexact, Rounded, localcontext
from functools import cache

from babel.numbers import format_currency, get_currency_precision, list_currencies

from domain.amounts import PriceDefinitionError

__all__ = ["currency_exponent", "format_amount", "format_unit_amount"]

_CURRENCY_RE = re.compile(r"[A-Za-z]{3}")
# Exact for any amount a numeric(38,0) column holds; a rounding would raise, never hide.
_CONTEXT = Context(prec=60, traps=[Inexact, Rounded])

# CLDR (Babel's source) gives the digits people *display*, which for a few currencies is
# not the ISO 4217 minor unit that amounts are counted in (CLDR rounds the Iraqi dinar to
# whole dinars; ISO 4217 has fils, 3 digits). Amounts count ISO 4217 minor units, so these
# win. Checked against the ISO 4217 lists (current and historic) for every code Babel 2.18
# knows.
_ISO_4217_EXPONENTS: dict[str, int] = {
    "IQD": 3,
    "AFN": 2,
    "ALL": 2,
    "IRR": 2,
    "KPW": 2,
    "LAK": 2,
    "LBP": 2,
    "MGA": 2,
    "MMK": 2,
    "RSD": 2,
    "SLL": 2,
    "SOS": 2,
    "SYP": 2,
    "YER": 2,
    # withdrawn codes still in Babel's list (ISO 4217 list three)
    "MRO": 2,
    "STD": 2,
    "TMM": 2,
    "ZMK": 2,
    "ZWD": 2,
}
# ISO 4217 gives these no minor unit ("N.A.": precious metals, SDR, testing codes): an
# amount cannot be counted in minor units of them, so prices in them are refused.
_NO_MINOR_UNIT = frozenset(
    {"XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XDR", "XPD", "XPT", "XSU", "XTS", "XUA", "XXX"}
)


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def currency_exponent(currency: str) -> int:
    """Digits of the currency's minor unit (EUR 2, JPY 0, KWD 3), any case.

    Raises:
        PriceDefinitionError: (param ``currency``) for anything that is not a known ISO 4217
            code — Babel would otherwise answer 2 for a made-up code.
    """
    if not isinstance(currency, str) or not _CURRENCY_RE.fullmatch(currency):
        raise PriceDefinitionError(
            f"currency must be a three-letter ISO 4217 code such as 'eur', got {currency!r}",
            "currency",
        )
    code = currency.upper()
    if code not in _known_currencies():
        raise PriceDefinitionError(
            f"currency {currency!r} is not a known ISO 4217 currency code", "currency"
        )
    if code in _NO_MINOR_UNIT:
        raise PriceDefinitionError(
            f"currency {currency!r} has no minor unit in ISO 4217 (a metal, fund or testing"
            " code) and can't be used for prices",
            "currency",
        )
    override = _ISO_4217_EXPONENTS.get(code)
    return int(get_currency_precision(code)) if override is None else override


def format_amount(amount_minor: int, currency: str) -> str:
    """Human display of a minor-unit amount ("€36.84", "¥3,684") for the CLI and demos.

    Raises:
        PriceDefinitionError: for an unknown currency.
    """
    exponent = currency_exponent(currency)
    with localcontext(_CONTEXT):
        major = Decimal(amount_minor).scaleb(-exponent)
    # The pattern fixes the digits to the ISO exponent (CLDR's own would round IQD to 0).
    pattern = "¤#,##0" + ("." + "0" * exponent if exponent else "")
    return str(
        format_currency(major, currency.upper(), format=pattern, locale="en", currency_digits=False)
    )


def format_unit_amount(decimal_minor: str, currency: str) -> str:
    """Human display of a unit amount in minor units, which may have decimals ("0.2" cents
    → "€0.002"): every digit it has is shown, never rounded away.

    Raises:
        PriceDefinitionError: for an unknown currency.
    """
    exponent = currency_exponent(currency)
    with localcontext(_CONTEXT):
        major = Decimal(decimal_minor).scaleb(-exponent)
    extra = max(0, -int(major.normalize().as_tuple().exponent) - exponent)
    pattern = "¤#,##0" + ("." + "0" * exponent + "#" * extra if exponent or extra else "")
    return str(
        format_currency(major, currency.upper(), format=pattern, locale="en", currency_digits=False)
    )
