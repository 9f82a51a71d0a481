"""Price terms and line amounts, with Stripe's semantics.

Pure: no I/O, no framework, so it can be tested exhaustively. Amounts are integers in
the currency's minor unit (the ISO 4217 exponent, ``domain.currencies``); unit and flat
amounts may be fractional minor units (``unitAmountDecimal: '0.2'`` EUR is €0.002), read,
stored and shown by one codec, ``domain.amounts``.

A line amount is computed exactly with ``Decimal`` (a local context whose precision
covers the largest valid input, with ``Inexact`` trapped so a silent rounding can never
happen) and rounded once, half up, to a whole minor unit: 0.05 * 30 = 1.5 → 2.

A quantity is an ``int`` or, for meter usage, a ``Decimal`` with at most
``MAX_QUANTITY_PLACES`` decimal places (a meter's sum of decimal values): graduated slices,
volume tiers and package counts work on the exact value, so 2.5 units across a tier boundary
at 2 bill 2 at the first tier and 0.5 at the second.

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

import functools
import math
from collections.abc import Callable, Mapping
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
from typing import Any, Literal, cast

import orjson

from domain.amounts import (
    PriceDefinitionError,
    decimal_str,
    parse_amount_pair,
    shown,
    shown_amount,
    stored_amount,
)
from domain.currencies import currency_exponent, format_amount

__all__ = [
    "MAX_QUANTITY",
    "MAX_QUANTITY_PLACES",
    "MAX_TIERS",
    "TIER_KEYS",
    "TRANSFORM_KEYS",
    "PriceDefinitionError",
    "PriceTerms",
    "Quantity",
    "Tier",
    "TransformQuantity",
    "currency_exponent",
    "format_amount",
    "line_amount",
    "parse_price_terms",
    "prorated_amount",
    "render_stored_terms",
    "render_terms",
    "terms_to_json",
    "unit_amount_decimal_str",
]

BillingScheme = Literal["per_unit", "tiered"]
TiersMode = Literal["graduated", "volume"]
Rounding = Literal["up", "down"]

MAX_TIERS = 100  # the API's limit too: its request model caps ``tiers`` with this
MAX_QUANTITY = 2**63 - 1  # the largest quantity a line may have (Postgres bigint's)
MAX_QUANTITY_PLACES = 12  # decimal places of a quantity: those of a meter event's value
Quantity = int | Decimal
_SCHEMES: dict[str, BillingScheme] = {
    "per_unit": "per_unit",
    "usage": "per_unit",
    "tiered": "tiered",
}
_TIERS_MODES: tuple[TiersMode, ...] = ("graduated", "volume")
_ROUNDINGS: tuple[Rounding, ...] = ("up", "down")
TIER_KEYS = frozenset(
    {"upTo", "unitAmount", "unitAmountDecimal", "flatAmount", "flatAmountDecimal"}
)
TRANSFORM_KEYS = frozenset({"divideBy", "round"})
# Worst case: a quantity < 2**63 with 12 places (31 digits) times an amount < 10**12 with 12
# places (24 digits) is 55 digits; summed over 100 tiers plus flat amounts, 58: within 80.
_CONTEXT = Context(
    prec=80, rounding=ROUND_HALF_UP, traps=[Inexact, Rounded, InvalidOperation, Overflow]
)


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
    unit_amount = parse_amount_pair(data, "unitAmount", "unitAmountDecimal")
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
            f"tiersMode must be 'graduated' or 'volume', got {shown(raw_mode)}", "tiersMode"
        )
    return PriceTerms(
        currency=currency.lower(),
        billing_scheme="tiered",
        tiers=_parse_tiers(raw_tiers),
        tiers_mode=cast(TiersMode, raw_mode),
    )


def terms_to_json(terms: PriceTerms) -> dict[str, Any]:
    """The stored document (``prices.terms``); :func:`parse_price_terms` reads it back
    unchanged.

    Every key is always present (``None`` where it does not apply) so stored documents have
    one shape. Each amount is stored in the one key it needs (``domain.amounts``), never
    both, because the parser refuses both.
    """
    return _document(terms, stored_amount)


def render_stored_terms(stored: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`render_terms` of a stored document (``prices.terms``), parsed and rendered once
    per distinct document: an invoice renders the price of every line, and a price's terms
    never change once created. Treat the result as read-only; it is shared."""
    return _rendered(orjson.dumps(stored, option=orjson.OPT_SORT_KEYS))


@functools.lru_cache(maxsize=4096)
def _rendered(stored: bytes) -> dict[str, Any]:
    return render_terms(parse_price_terms(orjson.loads(stored)))


def render_terms(terms: PriceTerms) -> dict[str, Any]:
    """The pricing fields of the API's price object: the stored document's keys, with each
    amount shown as both ``xAmount`` and ``xAmountDecimal`` (``domain.amounts``)."""
    return _document(terms, shown_amount)


def _document(
    terms: PriceTerms, amount: Callable[[Decimal, str, str], dict[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {"currency": terms.currency, "billingScheme": terms.billing_scheme}
    if terms.unit_amount is None:
        out |= {"unitAmount": None, "unitAmountDecimal": None}
    else:
        out |= amount(terms.unit_amount, "unitAmount", "unitAmountDecimal")
    out["tiers"] = (
        None
        if terms.billing_scheme != "tiered"
        else [
            {
                "upTo": "inf" if t.up_to is None else t.up_to,
                **amount(t.unit_amount, "unitAmount", "unitAmountDecimal"),
                **amount(t.flat_amount, "flatAmount", "flatAmountDecimal"),
            }
            for t in terms.tiers
        ]
    )
    out["tiersMode"] = terms.tiers_mode
    tq = terms.transform_quantity
    out["transformQuantity"] = None if tq is None else {"divideBy": tq.divide_by, "round": tq.round}
    return out


def line_amount(terms: PriceTerms, quantity: Quantity) -> int:
    """The line's amount in minor units: exact, then rounded once, half up.

    Raises:
        ValueError: for a quantity below 0, above 2**63 - 1, not finite or with more than
            12 decimal places, or terms that :func:`parse_price_terms` would not have
            produced.
        TypeError: for a quantity that is neither an int nor a Decimal (``bool`` included).
    """
    _check_quantity(quantity)
    with localcontext(_CONTEXT):
        # to_integral_value never signals Inexact, so this is the one deliberate rounding.
        return int(_exact_amount(terms, quantity).to_integral_value(rounding=ROUND_HALF_UP))


def _check_quantity(quantity: Quantity) -> None:
    if isinstance(quantity, bool) or not isinstance(quantity, int | Decimal):
        raise TypeError(f"quantity must be an int or a Decimal, got {type(quantity).__name__}")
    if isinstance(quantity, Decimal):
        if not quantity.is_finite():
            raise ValueError(f"quantity must be finite, got {quantity}")
        exponent = quantity.normalize().as_tuple().exponent
        if isinstance(exponent, int) and -exponent > MAX_QUANTITY_PLACES:
            raise ValueError(
                f"quantity may have at most {MAX_QUANTITY_PLACES} decimal places, got {quantity}"
            )
    if quantity < 0:
        raise ValueError(f"quantity must be >= 0, got {quantity}")
    if quantity > MAX_QUANTITY:
        raise ValueError(f"quantity must be <= {MAX_QUANTITY}, got {quantity}")


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
    return None if terms.unit_amount is None else decimal_str(terms.unit_amount)


def _parse_scheme(value: Any) -> BillingScheme:
    if value is None:
        return "per_unit"
    if not isinstance(value, str) or value not in _SCHEMES:
        raise PriceDefinitionError(
            f"billingScheme must be 'per_unit', 'tiered' or 'usage', got {shown(value)}",
            "billingScheme",
        )
    return _SCHEMES[value]


def _parse_positive_int(value: Any, param: str, message: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUANTITY:
        raise PriceDefinitionError(f"{message}, got {shown(value)}", param)
    return value


def _parse_tiers(raw: Any) -> tuple[Tier, ...]:
    if not isinstance(raw, list | tuple):
        raise PriceDefinitionError(f"tiers must be a list, got {type(raw).__name__}", "tiers")
    if not raw:
        raise PriceDefinitionError("a tiered price needs at least one tier", "tiers")
    if len(raw) > MAX_TIERS:
        raise PriceDefinitionError(f"a price may have at most {MAX_TIERS} tiers", "tiers")
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
        if key not in TIER_KEYS:
            raise PriceDefinitionError(
                f"{prefix} has unknown field {shown(key)}; expected one of "
                f"{', '.join(sorted(TIER_KEYS))}",
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
            up_to_raw, param, f"{param} must be 'inf' or an integer from 1 to {MAX_QUANTITY}"
        )
        if last:
            raise PriceDefinitionError(
                "the last tier must have upTo 'inf' so that every quantity is priced", param
            )
    prefix += "."
    unit = parse_amount_pair(raw, "unitAmount", "unitAmountDecimal", prefix)
    flat = parse_amount_pair(raw, "flatAmount", "flatAmountDecimal", prefix)
    return Tier(up_to=up_to, unit_amount=unit or Decimal(0), flat_amount=flat or Decimal(0))


def _parse_transform(raw: Any) -> TransformQuantity:
    if not isinstance(raw, Mapping):
        raise PriceDefinitionError(
            "transformQuantity must be an object {divideBy, round}", "transformQuantity"
        )
    for key in raw:
        if key not in TRANSFORM_KEYS:
            raise PriceDefinitionError(
                f"transformQuantity has unknown field {shown(key)}; expected divideBy and round",
                f"transformQuantity.{key}",
            )
    divide_by = _parse_positive_int(
        raw.get("divideBy"),
        "transformQuantity.divideBy",
        f"transformQuantity.divideBy must be an integer from 1 to {MAX_QUANTITY}",
    )
    rounding = raw.get("round")
    if rounding not in _ROUNDINGS:
        raise PriceDefinitionError(
            f"transformQuantity.round must be 'up' or 'down', got {shown(rounding)}",
            "transformQuantity.round",
        )
    return TransformQuantity(divide_by=divide_by, round=cast(Rounding, rounding))


def _packages(quantity: Quantity, tq: TransformQuantity) -> int:
    """Whole packages of ``tq.divide_by`` units, rounded as the price says (exact)."""
    packages = Fraction(quantity) / tq.divide_by
    return math.ceil(packages) if tq.round == "up" else math.floor(packages)


def _exact_amount(terms: PriceTerms, quantity: Quantity) -> Decimal:
    """The unrounded amount; runs inside ``_CONTEXT`` so any inexact step raises."""
    if terms.billing_scheme == "per_unit":
        if terms.unit_amount is None:
            raise ValueError("per_unit terms need a unit_amount")
        tq = terms.transform_quantity
        if tq is not None:
            quantity = _packages(quantity, tq)
        return quantity * terms.unit_amount
    if not terms.tiers or terms.tiers[-1].up_to is not None:
        raise ValueError("tiered terms need tiers ending with an 'inf' tier")
    if terms.tiers_mode == "volume":
        tier = next(t for t in terms.tiers if t.up_to is None or quantity <= t.up_to)
        return quantity * tier.unit_amount + tier.flat_amount
    if terms.tiers_mode != "graduated":
        raise ValueError(f"unknown tiers_mode {terms.tiers_mode!r}")
    total, lower = Decimal(0), Decimal(0)
    upper: Quantity
    for tier in terms.tiers:
        if quantity <= lower:
            break
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        total += (upper - lower) * tier.unit_amount + tier.flat_amount
        lower = Decimal(upper)
    return total
