"""Price terms and line amounts, with Stripe's semantics.

Pure: no I/O, no framework, so it can be tested exhaustively. Amounts are integers in
the currency's minor unit (the ISO 4217 exponent: Babel's CLDR data, corrected where CLDR
departs from ISO, see ``_ISO_4217_EXPONENTS``); unit and flat amounts may be fractional
minor units (``unitAmountDecimal: '0.2'`` EUR is €0.002).

A line amount is computed exactly with ``Decimal`` (a local context whose precision
covers the largest valid input, with ``Inexact`` trapped so a silent rounding can never
happen) and rounded once, half up, to a whole minor unit: 0.05 * 30 = 1.5 → 2.

Choices where Stripe is quiet or surprising, written down once:

* ``graduated``: each slice of the quantity is priced at its tier's unit amount, and a
  tier's flat amount is charged once the quantity reaches into it. A tier holding no
  units adds nothing, so quantity 0 costs 0 (no flat fees at all).
* ``volume``: the whole quantity is priced at the one tier it falls in, plus that tier's
  flat amount. Quantity 0 falls in the first tier and, as in Stripe, its flat amount
  *is* charged.
* ``transformQuantity`` (package pricing) divides the quantity and rounds up or down to
  whole packages before multiplying by the unit amount; it cannot be combined with tiers.
* ``billingScheme`` defaults to ``per_unit``; ``usage`` (the guide's metered price) is a
  per-unit price. A key whose value is ``None`` counts as absent (JSON ``null``).
* Unknown keys inside a tier or ``transformQuantity`` are rejected rather than ignored,
  so a typo (``unit_amount``) cannot silently make a tier free. Top-level keys that are
  not about pricing (``product``, ``recurring``, …) are the caller's business.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    Inexact,
    InvalidOperation,
    Overflow,
    Rounded,
    localcontext,
)
from fractions import Fraction
from functools import cache
from typing import Any, Literal, cast

from babel.numbers import format_currency, get_currency_precision, list_currencies

__all__ = [
    "PriceDefinitionError",
    "PriceTerms",
    "Tier",
    "TransformQuantity",
    "currency_exponent",
    "format_amount",
    "line_amount",
    "parse_price_terms",
    "prorated_amount",
    "terms_to_json",
    "unit_amount_decimal_str",
]

BillingScheme = Literal["per_unit", "tiered"]
TiersMode = Literal["graduated", "volume"]
Rounding = Literal["up", "down"]

_MAX_AMOUNT = 10**12  # exclusive bound on unit and flat amounts, in minor units
_MAX_DECIMAL_PLACES = 12
_MAX_TIERS = 250
_MAX_QUANTITY = 2**63 - 1  # Postgres bigint: the largest quantity that can be stored
_SCHEMES: dict[str, BillingScheme] = {
    "per_unit": "per_unit",
    "usage": "per_unit",
    "tiered": "tiered",
}
_TIERS_MODES: tuple[TiersMode, ...] = ("graduated", "volume")
_ROUNDINGS: tuple[Rounding, ...] = ("up", "down")
_TIER_KEYS = frozenset(
    {"upTo", "unitAmount", "unitAmountDecimal", "flatAmount", "flatAmountDecimal"}
)
_TRANSFORM_KEYS = frozenset({"divideBy", "round"})
_DECIMAL_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_CURRENCY_RE = re.compile(r"[A-Za-z]{3}")
# Worst case: quantity < 2**63 (19 digits) * amount < 10**12 with 12 decimal places,
# summed over at most 250 tiers plus flat amounts: under 50 significant digits.
_CONTEXT = Context(
    prec=60, rounding=ROUND_HALF_UP, traps=[Inexact, Rounded, InvalidOperation, Overflow]
)


class PriceDefinitionError(ValueError):
    """A price definition the API must refuse; ``param`` names the offending field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True, slots=True)
class Tier:
    """One tier; ``up_to`` None is the open-ended ``"inf"`` tier. Amounts in minor units."""

    up_to: int | None
    unit_amount: Decimal = Decimal(0)
    flat_amount: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class TransformQuantity:
    """Package pricing: bill ``quantity / divide_by`` packages, rounded ``up`` or ``down``."""

    divide_by: int
    round: Rounding


@dataclass(frozen=True, slots=True)
class PriceTerms:
    """The validated pricing part of a price. Build it with :func:`parse_price_terms`.

    ``unit_amount`` is set for ``per_unit`` prices only; ``tiers`` and ``tiers_mode`` for
    ``tiered`` prices only. Constructing one directly skips validation.
    """

    currency: str
    billing_scheme: BillingScheme
    unit_amount: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    tiers_mode: TiersMode | None = None
    transform_quantity: TransformQuantity | None = None


# CLDR (Babel's source) gives the digits people *display*, which for a few currencies is
# not the ISO 4217 minor unit that amounts are counted in (CLDR rounds the Iraqi dinar to
# whole dinars; ISO 4217 has fils, 3 digits). SPEC §4 says ISO 4217, so these win. Checked
# against the ISO 4217 lists (current and historic) for every code Babel 2.18 knows.
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


def parse_price_terms(data: Mapping[str, Any]) -> PriceTerms:
    """Validate the API's camelCase price fields into :class:`PriceTerms`.

    Raises:
        PriceDefinitionError: with a message saying what to fix and ``param`` naming the
            field (``"tiers[1].upTo"``, ``"transformQuantity.divideBy"``, …).
    """
    currency = data.get("currency")
    if currency is None:
        raise PriceDefinitionError("currency is required, e.g. 'eur'", "currency")
    currency_exponent(currency)
    scheme = _parse_scheme(data.get("billingScheme"))
    unit_amount = _parse_amount_pair(data, "unitAmount", "unitAmountDecimal")
    raw_tiers, raw_mode = data.get("tiers"), data.get("tiersMode")
    raw_transform = data.get("transformQuantity")

    if scheme == "per_unit":
        if raw_tiers is not None:
            raise PriceDefinitionError(
                "tiers are only allowed with billingScheme 'tiered'", "tiers"
            )
        if raw_mode is not None:
            raise PriceDefinitionError(
                "tiersMode is only allowed with billingScheme 'tiered'", "tiersMode"
            )
        if unit_amount is None:
            raise PriceDefinitionError(
                "a per-unit price needs unitAmount (whole minor units) or unitAmountDecimal",
                "unitAmount",
            )
        transform = None if raw_transform is None else _parse_transform(raw_transform)
        return PriceTerms(
            currency=currency.lower(),
            billing_scheme="per_unit",
            unit_amount=unit_amount,
            transform_quantity=transform,
        )

    if unit_amount is not None:
        param = "unitAmount" if data.get("unitAmount") is not None else "unitAmountDecimal"
        raise PriceDefinitionError(
            f"a tiered price takes its amounts from tiers; remove {param}", param
        )
    if raw_transform is not None:
        raise PriceDefinitionError(
            "transformQuantity cannot be combined with tiers", "transformQuantity"
        )
    if raw_tiers is None:
        raise PriceDefinitionError("a tiered price needs tiers", "tiers")
    if raw_mode is None:
        raise PriceDefinitionError(
            "a tiered price needs tiersMode: 'graduated' or 'volume'", "tiersMode"
        )
    if raw_mode not in _TIERS_MODES:
        raise PriceDefinitionError(
            f"tiersMode must be 'graduated' or 'volume', got {raw_mode!r}", "tiersMode"
        )
    return PriceTerms(
        currency=currency.lower(),
        billing_scheme="tiered",
        tiers=_parse_tiers(raw_tiers),
        tiers_mode=cast(TiersMode, raw_mode),
    )


def terms_to_json(terms: PriceTerms) -> dict[str, Any]:
    """The terms as JSON-safe camelCase; :func:`parse_price_terms` reads it back unchanged.

    Every key is always present (``None`` where it does not apply) so stored documents have
    one shape. A whole amount is written as ``unitAmount`` (int), a fractional one as
    ``unitAmountDecimal`` (string), never both, because the parser refuses both.
    """
    out: dict[str, Any] = {"currency": terms.currency, "billingScheme": terms.billing_scheme}
    if terms.unit_amount is None:
        out |= {"unitAmount": None, "unitAmountDecimal": None}
    else:
        out |= _amount_json(terms.unit_amount, "unitAmount", "unitAmountDecimal")
    out["tiers"] = (
        None
        if terms.billing_scheme != "tiered"
        else [
            {
                "upTo": "inf" if t.up_to is None else t.up_to,
                **_amount_json(t.unit_amount, "unitAmount", "unitAmountDecimal"),
                **_amount_json(t.flat_amount, "flatAmount", "flatAmountDecimal"),
            }
            for t in terms.tiers
        ]
    )
    out["tiersMode"] = terms.tiers_mode
    tq = terms.transform_quantity
    out["transformQuantity"] = None if tq is None else {"divideBy": tq.divide_by, "round": tq.round}
    return out


def line_amount(terms: PriceTerms, quantity: int) -> int:
    """The line's amount in minor units: exact, then rounded once, half up.

    Raises:
        ValueError: for a quantity below 0 or above 2**63 - 1 (Postgres bigint), or terms
            that :func:`parse_price_terms` would not have produced.
        TypeError: for a quantity that is not an int (``bool`` included).
    """
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        raise TypeError(f"quantity must be an int, got {type(quantity).__name__}")
    if quantity < 0:
        raise ValueError(f"quantity must be >= 0, got {quantity}")
    if quantity > _MAX_QUANTITY:
        raise ValueError(f"quantity must be <= {_MAX_QUANTITY}, got {quantity}")
    with localcontext(_CONTEXT):
        # to_integral_value never signals Inexact, so this is the one deliberate rounding.
        return int(_exact_amount(terms, quantity).to_integral_value(rounding=ROUND_HALF_UP))


def prorated_amount(terms: PriceTerms, quantity: int, remaining_s: int, period_s: int) -> int:
    """What ``quantity`` costs for ``remaining_s`` of a ``period_s`` period: the exact
    amount times remaining/period, rounded once, half up (Stripe's time-based proration).

    Raises:
        ValueError: for a period that is not positive, remaining time outside
            ``[0, period_s]``, or a quantity :func:`line_amount` refuses.
    """
    if period_s <= 0 or not 0 <= remaining_s <= period_s:
        raise ValueError(
            f"remaining {remaining_s}s must lie within a positive period of {period_s}s"
        )
    line_amount(terms, quantity)  # the same argument checks
    with localcontext(_CONTEXT):
        exact = Fraction(_exact_amount(terms, quantity)) * Fraction(remaining_s, period_s)
    return math.floor(exact + Fraction(1, 2))  # amounts are >= 0: half up


def unit_amount_decimal_str(terms: PriceTerms) -> str | None:
    """The per-unit amount as a plain decimal string ("0.2", "5"); None for tiered prices."""
    return None if terms.unit_amount is None else _decimal_str(terms.unit_amount)


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


def _parse_scheme(value: Any) -> BillingScheme:
    if value is None:
        return "per_unit"
    if not isinstance(value, str) or value not in _SCHEMES:
        raise PriceDefinitionError(
            f"billingScheme must be 'per_unit', 'tiered' or 'usage', got {value!r}", "billingScheme"
        )
    return _SCHEMES[value]


def _parse_amount_pair(
    data: Mapping[str, Any], int_key: str, decimal_key: str, prefix: str = ""
) -> Decimal | None:
    """Read ``xAmount`` / ``xAmountDecimal``: at most one of them, None if neither."""
    whole, fractional = data.get(int_key), data.get(decimal_key)
    if whole is not None and fractional is not None:
        raise PriceDefinitionError(
            f"give either {int_key} or {decimal_key}, not both", prefix + decimal_key
        )
    if whole is not None:
        return _parse_whole_amount(whole, prefix + int_key, decimal_key)
    if fractional is not None:
        return _parse_decimal_amount(fractional, prefix + decimal_key)
    return None


def _parse_whole_amount(value: Any, param: str, decimal_key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PriceDefinitionError(
            f"{param} must be a whole number of minor units, got {value!r}; "
            f"use {decimal_key} for fractions",
            param,
        )
    return _check_bounds(Decimal(value), param)


def _parse_decimal_amount(value: Any, param: str) -> Decimal:
    """Parse a string or number exactly (floats via their shortest repr, never binary)."""
    amount: Decimal | None = None
    if isinstance(value, bool):
        amount = None
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float | Decimal):
        candidate = Decimal(repr(value)) if isinstance(value, float) else value
        amount = candidate if candidate.is_finite() else None
    elif isinstance(value, str) and _DECIMAL_RE.fullmatch(value):
        amount = Decimal(value)
    if amount is None:
        raise PriceDefinitionError(
            f"{param} must be a decimal number of minor units such as '0.2', got {value!r}", param
        )
    amount = _check_bounds(amount, param)
    if amount == 0:
        return Decimal(0)
    sign, digits, exponent = amount.as_tuple()
    if not isinstance(exponent, int):  # unreachable: only finite values get here
        raise PriceDefinitionError(f"{param} must be finite", param)
    text = "".join(map(str, digits))
    drop = min(len(text) - len(text.rstrip("0")), max(-exponent, 0))  # fractional zeros only
    if -(exponent + drop) > _MAX_DECIMAL_PLACES:
        raise PriceDefinitionError(
            f"{param} may have at most {_MAX_DECIMAL_PLACES} decimal places, got {value!r}", param
        )
    return Decimal((sign, digits[: len(digits) - drop], exponent + drop))


def _check_bounds(amount: Decimal, param: str) -> Decimal:
    if amount < 0:
        raise PriceDefinitionError(f"{param} must be >= 0, got {amount}", param)
    if amount >= _MAX_AMOUNT:
        raise PriceDefinitionError(
            f"{param} must be less than 10^12 minor units, got {amount}", param
        )
    return amount


def _parse_positive_int(value: Any, param: str, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_QUANTITY:
        raise PriceDefinitionError(f"{message}, got {value!r}", param)
    return value


def _parse_tiers(raw: Any) -> tuple[Tier, ...]:
    if not isinstance(raw, list | tuple):
        raise PriceDefinitionError(f"tiers must be a list, got {type(raw).__name__}", "tiers")
    if not raw:
        raise PriceDefinitionError("a tiered price needs at least one tier", "tiers")
    if len(raw) > _MAX_TIERS:
        raise PriceDefinitionError(f"a price may have at most {_MAX_TIERS} tiers", "tiers")
    tiers: list[Tier] = []
    for index, item in enumerate(raw):
        tiers.append(_parse_tier(item, f"tiers[{index}]", last=index == len(raw) - 1))
        previous = tiers[-2].up_to if len(tiers) > 1 else 0
        up_to = tiers[-1].up_to
        if previous is not None and up_to is not None and up_to <= previous:
            raise PriceDefinitionError(
                f"tiers[{index}].upTo must be greater than the previous tier's upTo "
                f"({previous}), got {up_to}",
                f"tiers[{index}].upTo",
            )
    return tuple(tiers)


def _parse_tier(raw: Any, prefix: str, *, last: bool) -> Tier:
    if not isinstance(raw, Mapping):
        raise PriceDefinitionError(f"{prefix} must be an object with upTo", prefix)
    for key in raw:
        if key not in _TIER_KEYS:
            raise PriceDefinitionError(
                f"{prefix} has unknown field {key!r}; expected one of "
                f"{', '.join(sorted(_TIER_KEYS))}",
                f"{prefix}.{key}",
            )
    up_to_raw, param = raw.get("upTo"), f"{prefix}.upTo"
    if up_to_raw == "inf":
        if not last:
            raise PriceDefinitionError(
                "only the last tier may have upTo 'inf'; give this tier an integer upTo", param
            )
        up_to = None
    elif up_to_raw is None:
        raise PriceDefinitionError(f"{param} is required: an integer or 'inf'", param)
    else:
        up_to = _parse_positive_int(
            up_to_raw, param, f"{param} must be 'inf' or an integer from 1 to {_MAX_QUANTITY}"
        )
        if last:
            raise PriceDefinitionError(
                "the last tier must have upTo 'inf' so that every quantity is priced", param
            )
    prefix += "."
    unit = _parse_amount_pair(raw, "unitAmount", "unitAmountDecimal", prefix)
    flat = _parse_amount_pair(raw, "flatAmount", "flatAmountDecimal", prefix)
    return Tier(up_to=up_to, unit_amount=unit or Decimal(0), flat_amount=flat or Decimal(0))


def _parse_transform(raw: Any) -> TransformQuantity:
    if not isinstance(raw, Mapping):
        raise PriceDefinitionError(
            "transformQuantity must be an object {divideBy, round}", "transformQuantity"
        )
    for key in raw:
        if key not in _TRANSFORM_KEYS:
            raise PriceDefinitionError(
                f"transformQuantity has unknown field {key!r}; expected divideBy and round",
                f"transformQuantity.{key}",
            )
    divide_by = _parse_positive_int(
        raw.get("divideBy"),
        "transformQuantity.divideBy",
        f"transformQuantity.divideBy must be an integer from 1 to {_MAX_QUANTITY}",
    )
    rounding = raw.get("round")
    if rounding not in _ROUNDINGS:
        raise PriceDefinitionError(
            f"transformQuantity.round must be 'up' or 'down', got {rounding!r}",
            "transformQuantity.round",
        )
    return TransformQuantity(divide_by=divide_by, round=cast(Rounding, rounding))


def _exact_amount(terms: PriceTerms, quantity: int) -> Decimal:
    """The unrounded amount; runs inside ``_CONTEXT`` so any inexact step raises."""
    if terms.billing_scheme == "per_unit":
        if terms.unit_amount is None:
            raise ValueError("per_unit terms need a unit_amount")
        tq = terms.transform_quantity
        if tq is not None:
            quantity = (
                -(-quantity // tq.divide_by) if tq.round == "up" else (quantity // tq.divide_by)
            )
        return quantity * terms.unit_amount
    if not terms.tiers or terms.tiers[-1].up_to is not None:
        raise ValueError("tiered terms need tiers ending with an 'inf' tier")
    if terms.tiers_mode == "volume":
        tier = next(t for t in terms.tiers if t.up_to is None or quantity <= t.up_to)
        return quantity * tier.unit_amount + tier.flat_amount
    if terms.tiers_mode != "graduated":
        raise ValueError(f"unknown tiers_mode {terms.tiers_mode!r}")
    total, lower = Decimal(0), 0
    for tier in terms.tiers:
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        total += (upper - lower) * tier.unit_amount + tier.flat_amount
        lower = upper
    return total


def _amount_json(amount: Decimal, int_key: str, decimal_key: str) -> dict[str, Any]:
    if amount == amount.to_integral_value():
        return {int_key: int(amount), decimal_key: None}
    return {int_key: None, decimal_key: _decimal_str(amount)}


def _decimal_str(amount: Decimal) -> str:
    text = format(amount, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
