"""Pricing: worked examples from the spec, every validation error, and properties."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.pricing import (
    MAX_TIERS,
    PriceDefinitionError,
    PriceTerms,
    Tier,
    TransformQuantity,
    currency_exponent,
    format_amount,
    line_amount,
    parse_price_terms,
    prorated_amount,
    render_terms,
    terms_to_json,
    unit_amount_decimal_str,
)

# No example database: keep the working tree clean and runs reproducible.
SETTINGS = settings(database=None, max_examples=300)
MAX_TEST_QUANTITY = 2**53 * 1000

VOLUME = {
    "currency": "eur",
    "billingScheme": "tiered",
    "tiersMode": "volume",
    "tiers": [
        {"upTo": 5, "unitAmount": 700},
        {"upTo": 10, "unitAmount": 650},
        {"upTo": "inf", "unitAmount": 600},
    ],
}

# Graduated with flat amounts, by hand for quantity 1500:
#   tier 1 (1..100):    100 units * 10 = 1000, + flat  500 -> 1500
#   tier 2 (101..1000): 900 units *  5 = 4500, + flat 1000 -> 5500
#   tier 3 (1001..):    500 units *  1 =  500, + flat    0 ->  500
#   total 1500 + 5500 + 500 = 7500
# Quantity 101 reaches tier 2 with one unit: 1500 + 5 + 1000 = 2505.
GRADUATED = {
    "currency": "eur",
    "billingScheme": "tiered",
    "tiersMode": "graduated",
    "tiers": [
        {"upTo": 100, "unitAmount": 10, "flatAmount": 500},
        {"upTo": 1000, "unitAmount": 5, "flatAmount": 1000},
        {"upTo": "inf", "unitAmountDecimal": "1"},
    ],
}


def per_unit(**fields: Any) -> dict[str, Any]:
    return {"currency": "eur", "billingScheme": "per_unit", **fields}


def tiered(tiers: Any, mode: Any = "graduated", **fields: Any) -> dict[str, Any]:
    return {
        "currency": "eur",
        "billingScheme": "tiered",
        "tiersMode": mode,
        "tiers": tiers,
        **fields,
    }


def half_up(value: Fraction) -> int:
    """Independent reference rounding for non-negative values."""
    return math.floor(value + Fraction(1, 2))


# ---------------------------------------------------------------- worked examples


@pytest.mark.parametrize(
    ("data", "quantity", "amount"),
    [
        pytest.param(
            per_unit(billingScheme="usage", unitAmountDecimal="0.2"),
            18420,
            3684,
            id="guide: 18420 x 0.2 EUR",
        ),
        pytest.param(per_unit(unitAmountDecimal="0.05"), 30, 2, id="1.5 rounds half up"),
        pytest.param(per_unit(unitAmountDecimal="0.05"), 10, 1, id="0.5 rounds half up"),
        pytest.param(per_unit(unitAmountDecimal="0.05"), 9, 0, id="0.45 rounds down"),
        pytest.param(per_unit(unitAmount=5), 7, 35, id="whole unit amount"),
        pytest.param(per_unit(unitAmount=5), 0, 0, id="zero quantity"),
        pytest.param(VOLUME, 0, 0, id="volume 0"),
        pytest.param(VOLUME, 5, 3500, id="volume 5"),
        pytest.param(VOLUME, 6, 3900, id="volume 6"),
        pytest.param(VOLUME, 10, 6500, id="volume 10"),
        pytest.param(VOLUME, 11, 6600, id="volume 11"),
        pytest.param(GRADUATED, 0, 0, id="graduated 0: no flat fee"),
        pytest.param(GRADUATED, 1, 510, id="graduated 1"),
        pytest.param(GRADUATED, 100, 1500, id="graduated 100: tier 2 not reached"),
        pytest.param(GRADUATED, 101, 2505, id="graduated 101"),
        pytest.param(GRADUATED, 1500, 7500, id="graduated 1500"),
        pytest.param(
            per_unit(unitAmount=300, transformQuantity={"divideBy": 1000, "round": "up"}),
            1001,
            600,
            id="package up: 2 packages",
        ),
        pytest.param(
            per_unit(unitAmount=300, transformQuantity={"divideBy": 1000, "round": "down"}),
            1001,
            300,
            id="package down: 1 package",
        ),
        pytest.param(
            per_unit(unitAmount=300, transformQuantity={"divideBy": 1000, "round": "up"}),
            0,
            0,
            id="package up: 0 packages",
        ),
        pytest.param(
            per_unit(unitAmount=300, transformQuantity={"divideBy": 1000, "round": "up"}),
            1000,
            300,
            id="package up: exact",
        ),
        pytest.param(
            tiered(
                [
                    {"upTo": 10, "unitAmount": 100, "flatAmount": 250},
                    {"upTo": "inf", "unitAmount": 50},
                ],
                mode="volume",
            ),
            0,
            250,
            id="volume 0 pays first tier's flat amount (as Stripe)",
        ),
        pytest.param(
            tiered(
                [
                    {"upTo": 10, "unitAmount": 100, "flatAmount": 250},
                    {"upTo": "inf", "unitAmount": 50, "flatAmount": 1000},
                ],
                mode="volume",
            ),
            11,
            1550,
            id="volume pays only its own tier's flat amount",
        ),
        pytest.param(
            tiered(
                [
                    {"upTo": 3, "unitAmountDecimal": "0.25"},
                    {"upTo": "inf", "unitAmountDecimal": "0.25"},
                ]
            ),
            6,
            2,
            id="graduated rounds once, not per tier (0.75 + 0.75)",
        ),
        pytest.param({**per_unit(unitAmount=1), "currency": "JPY"}, 3684, 3684, id="JPY"),
    ],
)
def test_line_amount_examples(data: dict[str, Any], quantity: int, amount: int) -> None:
    assert line_amount(parse_price_terms(data), quantity) == amount


@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("EUR", 2),
        ("eur", 2),
        ("JPY", 0),
        ("KWD", 3),
        ("usd", 2),
        ("Bhd", 3),
    ],
)
def test_currency_exponent(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


# Where CLDR (Babel) and ISO 4217 disagree, ISO wins.
@pytest.mark.parametrize(
    ("code", "exponent"),
    [
        ("IQD", 3),
        ("iqd", 3),
        ("RSD", 2),
        ("LBP", 2),
        ("SYP", 2),
        ("YER", 2),
        ("MGA", 2),
        ("IRR", 2),
        ("ALL", 2),
        ("AFN", 2),
        ("MMK", 2),
        ("KPW", 2),
        ("LAK", 2),
        ("SOS", 2),
        ("CLF", 4),
        ("UYW", 4),
        ("ISK", 0),
        ("KRW", 0),
        ("VND", 0),
        ("TND", 3),
        ("OMR", 3),
    ],
)
def test_currency_exponent_follows_iso_4217_over_cldr(code: str, exponent: int) -> None:
    assert currency_exponent(code) == exponent


def test_iqd_prices_count_fils() -> None:
    terms = parse_price_terms({"currency": "iqd", "unitAmount": 1250})
    assert line_amount(terms, 3) == 3750  # 3.750 IQD
    assert format_amount(3750, "iqd").endswith("3.750")
    assert format_amount(1250, "rsd").endswith("12.50")


@pytest.mark.parametrize("code", ["XAU", "xdr", "XTS", "XXX"])
def test_codes_without_a_minor_unit_are_refused(code: str) -> None:
    with pytest.raises(PriceDefinitionError) as info:
        parse_price_terms({"currency": code, "unitAmount": 1})
    assert info.value.param == "currency"
    assert "no minor unit" in info.value.message


@pytest.mark.parametrize("code", ["ZZZ", "QQQ", "EURO", "EU", "", "€", "e1r"])
def test_unknown_currency_rejected(code: str) -> None:
    with pytest.raises(PriceDefinitionError) as info:
        currency_exponent(code)
    assert info.value.param == "currency"


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (3684, "eur", "€36.84"),
        (3684, "JPY", "¥3,684"),
        (5, "usd", "$0.05"),
        (0, "eur", "€0.00"),
    ],
)
def test_format_amount(amount: int, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


def test_format_amount_uses_three_digits_for_kwd() -> None:
    assert format_amount(1234, "kwd").endswith("1.234")


def test_parse_normalises() -> None:
    terms = parse_price_terms(
        {
            "currency": "EUR",
            "billingScheme": "usage",
            "unitAmountDecimal": "0.200",
            "product": "prod_1",
            "recurring": {"interval": "month"},
            "unitAmount": None,
            "tiers": None,
            "tiersMode": None,
            "transformQuantity": None,
        }
    )
    assert terms == PriceTerms(
        currency="eur", billing_scheme="per_unit", unit_amount=Decimal("0.2")
    )
    assert unit_amount_decimal_str(terms) == "0.2"


def test_billing_scheme_defaults_to_per_unit() -> None:
    assert parse_price_terms({"currency": "eur", "unitAmount": 5}).billing_scheme == "per_unit"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.2", "0.2"),
        ("5", "5"),
        ("5.000", "5"),
        ("50", "50"),
        (".5", "0.5"),
        ("0", "0"),
        ("-0", "0"),
        ("0.000000000001", "0.000000000001"),
        ("0.1000000000000000000", "0.1"),
        (0.2, "0.2"),
        (7, "7"),
        (Decimal("1.50"), "1.5"),
        ("999999999999.999999999999", "999999999999.999999999999"),
    ],
)
def test_unit_amount_decimal_str(value: Any, expected: str) -> None:
    terms = parse_price_terms(per_unit(unitAmountDecimal=value))
    assert unit_amount_decimal_str(terms) == expected


def test_unit_amount_decimal_str_is_none_for_tiered() -> None:
    assert unit_amount_decimal_str(parse_price_terms(VOLUME)) is None


def test_terms_to_json_shape() -> None:
    assert terms_to_json(parse_price_terms(GRADUATED)) == {
        "currency": "eur",
        "billingScheme": "tiered",
        "unitAmount": None,
        "unitAmountDecimal": None,
        "tiersMode": "graduated",
        "transformQuantity": None,
        "tiers": [
            {
                "upTo": 100,
                "unitAmount": 10,
                "unitAmountDecimal": None,
                "flatAmount": 500,
                "flatAmountDecimal": None,
            },
            {
                "upTo": 1000,
                "unitAmount": 5,
                "unitAmountDecimal": None,
                "flatAmount": 1000,
                "flatAmountDecimal": None,
            },
            {
                "upTo": "inf",
                "unitAmount": 1,
                "unitAmountDecimal": None,
                "flatAmount": 0,
                "flatAmountDecimal": None,
            },
        ],
    }
    package = per_unit(unitAmountDecimal="2.5", transformQuantity={"divideBy": 10, "round": "up"})
    assert terms_to_json(parse_price_terms(package)) == {
        "currency": "eur",
        "billingScheme": "per_unit",
        "unitAmount": None,
        "unitAmountDecimal": "2.5",
        "tiers": None,
        "tiersMode": None,
        "transformQuantity": {"divideBy": 10, "round": "up"},
    }


def test_the_tier_limit_is_one_hundred() -> None:
    """The API's request model and the parser share this one limit."""
    assert MAX_TIERS == 100
    tiers = [{"upTo": i + 1, "unitAmount": 1} for i in range(MAX_TIERS - 1)] + [INF]
    assert len(parse_price_terms(tiered(tiers)).tiers) == MAX_TIERS


def test_the_largest_terms_fit_the_exact_context() -> None:
    """The precision comment holds: the biggest amounts over the most tiers stay exact."""
    top = "999999999999.999999999999"
    tiers = [
        {"upTo": 2**63 - 1 - MAX_TIERS + i, "unitAmountDecimal": top, "flatAmountDecimal": top}
        for i in range(MAX_TIERS - 1)
    ] + [{"upTo": "inf", "unitAmountDecimal": top, "flatAmountDecimal": top}]
    for mode in ("graduated", "volume"):
        assert line_amount(parse_price_terms(tiered(tiers, mode)), 2**63 - 1) > 0


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        ({"unitAmount": 5}, {"unitAmount": 5, "unitAmountDecimal": "5"}),
        ({"unitAmount": 0}, {"unitAmount": 0, "unitAmountDecimal": "0"}),
        ({"unitAmountDecimal": "5"}, {"unitAmount": 5, "unitAmountDecimal": "5"}),
        ({"unitAmountDecimal": 7}, {"unitAmount": 7, "unitAmountDecimal": "7"}),
        ({"unitAmountDecimal": "0.2"}, {"unitAmount": None, "unitAmountDecimal": "0.2"}),
        ({"unitAmountDecimal": "0.200"}, {"unitAmount": None, "unitAmountDecimal": "0.2"}),
        ({"unitAmountDecimal": "12.50"}, {"unitAmount": None, "unitAmountDecimal": "12.5"}),
        ({"unitAmountDecimal": "5.000"}, {"unitAmount": 5, "unitAmountDecimal": "5"}),
    ],
)
def test_render_terms_shows_both_forms_of_the_unit_amount(
    written: dict[str, Any], shown: dict[str, Any]
) -> None:
    rendered = render_terms(parse_price_terms(per_unit(**written)))
    assert {k: rendered[k] for k in shown} == shown


def test_render_terms_shows_tier_amounts_in_both_forms() -> None:
    data = tiered(
        [
            {"upTo": 10, "unitAmount": 5, "flatAmountDecimal": "0.5"},
            {"upTo": 20, "unitAmountDecimal": "0.25", "flatAmount": 100},
            {"upTo": "inf"},
        ],
        mode="volume",
    )
    assert render_terms(parse_price_terms(data)) == {
        "currency": "eur",
        "billingScheme": "tiered",
        "unitAmount": None,
        "unitAmountDecimal": None,
        "tiersMode": "volume",
        "transformQuantity": None,
        "tiers": [
            {
                "upTo": 10,
                "unitAmount": 5,
                "unitAmountDecimal": "5",
                "flatAmount": None,
                "flatAmountDecimal": "0.5",
            },
            {
                "upTo": 20,
                "unitAmount": None,
                "unitAmountDecimal": "0.25",
                "flatAmount": 100,
                "flatAmountDecimal": "100",
            },
            {
                "upTo": "inf",
                "unitAmount": 0,
                "unitAmountDecimal": "0",
                "flatAmount": 0,
                "flatAmountDecimal": "0",
            },
        ],
    }


@pytest.mark.parametrize("quantity", [-1, -(2**70), 2**63])
def test_quantity_out_of_range_rejected(quantity: int) -> None:
    with pytest.raises(ValueError, match="quantity"):
        line_amount(parse_price_terms(per_unit(unitAmount=1)), quantity)


def test_quantity_must_be_int() -> None:
    with pytest.raises(TypeError):
        line_amount(parse_price_terms(per_unit(unitAmount=1)), True)
    with pytest.raises(TypeError):
        line_amount(parse_price_terms(per_unit(unitAmount=1)), 1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "quantity",
    [
        Decimal("-0.5"),
        Decimal(2**63) + Decimal("0.5"),
        Decimal("NaN"),
        Decimal("Infinity"),
        Decimal("0.0000000000001"),
    ],
)
def test_bad_decimal_quantities_rejected(quantity: Decimal) -> None:
    with pytest.raises(ValueError, match="quantity"):
        line_amount(parse_price_terms(per_unit(unitAmount=1)), quantity)


@pytest.mark.parametrize(
    ("data", "quantity", "amount"),
    [
        pytest.param(per_unit(unitAmount=10), Decimal("2.5"), 25, id="per unit"),
        pytest.param(per_unit(unitAmount=1), Decimal("0.5"), 1, id="0.5 rounds half up"),
        pytest.param(per_unit(unitAmount=1), Decimal("0.499999999999"), 0, id="just under half"),
        pytest.param(VOLUME, Decimal("5.5"), 3575, id="volume: 5.5 falls in the second tier"),
        pytest.param(VOLUME, Decimal("5"), 3500, id="volume: 5.0 stays in the first"),
        pytest.param(GRADUATED, Decimal("100.5"), 2503, id="graduated: 1500 + 2.5 + 1000 flat"),
        pytest.param(
            per_unit(unitAmount=250, transformQuantity={"divideBy": 1000, "round": "up"}),
            Decimal("1000.000000000001"),
            500,
            id="package up: a sliver over needs a second package",
        ),
        pytest.param(
            per_unit(unitAmount=250, transformQuantity={"divideBy": 1000, "round": "down"}),
            Decimal("1999.999999999999"),
            250,
            id="package down",
        ),
    ],
)
def test_decimal_quantity_examples(data: dict[str, Any], quantity: Decimal, amount: int) -> None:
    assert line_amount(parse_price_terms(data), quantity) == amount


def test_integral_decimal_quantity_prices_as_its_int() -> None:
    for data in (per_unit(unitAmountDecimal="0.05"), VOLUME, GRADUATED):
        terms = parse_price_terms(data)
        for q in (0, 1, 5, 6, 100, 101, 1500):
            assert line_amount(terms, Decimal(q)) == line_amount(terms, q)
            assert line_amount(terms, Decimal(f"{q}.000")) == line_amount(terms, q)


# ---------------------------------------------------------------- validation errors

INF = {"upTo": "inf", "unitAmount": 1}

INVALID: list[Any] = [
    # currency
    ({"unitAmount": 1}, "currency", "required"),
    (per_unit(unitAmount=1, currency=978), "currency", "three-letter"),
    (per_unit(unitAmount=1, currency="ZZZ"), "currency", "not a known"),
    (per_unit(unitAmount=1, currency="EURO"), "currency", "three-letter"),
    # billingScheme
    (per_unit(unitAmount=1, billingScheme="metered"), "billingScheme", "'per_unit'"),
    (per_unit(unitAmount=1, billingScheme=1), "billingScheme", "'tiered'"),
    # per-unit amount
    (per_unit(), "unitAmount", "needs unitAmount"),
    (per_unit(unitAmount=1, unitAmountDecimal="1"), "unitAmountDecimal", "not both"),
    (per_unit(unitAmount=-1), "unitAmount", ">= 0"),
    (per_unit(unitAmount=True), "unitAmount", "whole number"),
    (per_unit(unitAmount=1.5), "unitAmount", "use unitAmountDecimal"),
    (per_unit(unitAmount="5"), "unitAmount", "whole number"),
    (per_unit(unitAmount=10**12), "unitAmount", "less than 10^12"),
    (per_unit(unitAmountDecimal="-0.1"), "unitAmountDecimal", ">= 0"),
    (per_unit(unitAmountDecimal=-1), "unitAmountDecimal", ">= 0"),
    (per_unit(unitAmountDecimal="0.1234567890123"), "unitAmountDecimal", "12 decimal places"),
    (per_unit(unitAmountDecimal=1e-13), "unitAmountDecimal", "12 decimal places"),
    (per_unit(unitAmountDecimal="1000000000000"), "unitAmountDecimal", "less than 10^12"),
    (per_unit(unitAmountDecimal=1e300), "unitAmountDecimal", "less than 10^12"),
    (per_unit(unitAmountDecimal="abc"), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal=""), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal="1e3"), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal="1_000"), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal=" 1"), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal="NaN"), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal=float("nan")), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal=float("inf")), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal=Decimal("Infinity")), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal=True), "unitAmountDecimal", "decimal number"),
    (per_unit(unitAmountDecimal=[1]), "unitAmountDecimal", "decimal number"),
    # per-unit prices take no tiers
    (per_unit(unitAmount=1, tiers=[INF]), "tiers", "only allowed with billingScheme"),
    (per_unit(unitAmount=1, billingScheme="usage", tiers=[INF]), "tiers", "'tiered'"),
    (per_unit(unitAmount=1, tiersMode="volume"), "tiersMode", "only allowed"),
    # tiered prices take no top-level amount and no transformQuantity
    (tiered([INF], unitAmount=1), "unitAmount", "remove unitAmount"),
    (tiered([INF], unitAmountDecimal="1"), "unitAmountDecimal", "remove unitAmountDecimal"),
    (
        tiered([INF], transformQuantity={"divideBy": 2, "round": "up"}),
        "transformQuantity",
        "cannot be combined with tiers",
    ),
    # tiers and tiersMode
    (tiered(None), "tiers", "needs tiers"),
    (tiered([INF], mode=None), "tiersMode", "needs tiersMode"),
    (tiered([INF], mode="stairstep"), "tiersMode", "'graduated' or 'volume'"),
    (tiered([]), "tiers", "at least one tier"),
    (tiered({"upTo": "inf"}), "tiers", "must be a list"),
    (tiered("inf"), "tiers", "must be a list"),
    (tiered([INF] * (MAX_TIERS + 1)), "tiers", f"at most {MAX_TIERS}"),
    (tiered([5]), "tiers[0]", "must be an object"),
    (tiered([{"unitAmount": 1}]), "tiers[0].upTo", "required"),
    (tiered([{"upTo": 0}, INF]), "tiers[0].upTo", "from 1"),
    (tiered([{"upTo": True}, INF]), "tiers[0].upTo", "'inf' or an integer"),
    (tiered([{"upTo": "10"}, INF]), "tiers[0].upTo", "'inf' or an integer"),
    (tiered([{"upTo": 1.5}, INF]), "tiers[0].upTo", "'inf' or an integer"),
    (tiered([{"upTo": "Infinity"}, INF]), "tiers[0].upTo", "'inf' or an integer"),
    (tiered([{"upTo": 10}, {"upTo": 10}, INF]), "tiers[1].upTo", "greater than"),
    (tiered([{"upTo": 10}, {"upTo": 5}, INF]), "tiers[1].upTo", "greater than"),
    (tiered([INF, {"upTo": 10}]), "tiers[0].upTo", "only the last tier"),
    (tiered([INF, INF]), "tiers[0].upTo", "only the last tier"),
    (tiered([{"upTo": 5}, {"upTo": 10}]), "tiers[1].upTo", "last tier must have upTo 'inf'"),
    (tiered([{"upTo": 5}]), "tiers[0].upTo", "last tier must have upTo 'inf'"),
    # tier amounts
    (
        tiered([{"upTo": "inf", "unitAmount": 1, "unitAmountDecimal": "1"}]),
        "tiers[0].unitAmountDecimal",
        "not both",
    ),
    (
        tiered([{"upTo": 1}, {"upTo": "inf", "flatAmount": 1, "flatAmountDecimal": "1"}]),
        "tiers[1].flatAmountDecimal",
        "not both",
    ),
    (tiered([{"upTo": "inf", "flatAmount": -5}]), "tiers[0].flatAmount", ">= 0"),
    (tiered([{"upTo": "inf", "flatAmount": 0.5}]), "tiers[0].flatAmount", "flatAmountDecimal"),
    (
        tiered([{"upTo": "inf", "flatAmountDecimal": "0.0000000000001"}]),
        "tiers[0].flatAmountDecimal",
        "12 decimal places",
    ),
    (tiered([{"upTo": "inf", "unitAmount": 10**12}]), "tiers[0].unitAmount", "10^12"),
    (
        tiered([{"upTo": "inf", "unitAmountDecimal": "x"}]),
        "tiers[0].unitAmountDecimal",
        "decimal number",
    ),
    (tiered([{"upTo": "inf", "unit_amount": 5}]), "tiers[0].unit_amount", "unknown field"),
    # transformQuantity
    (per_unit(unitAmount=1, transformQuantity=1000), "transformQuantity", "must be an object"),
    (
        per_unit(unitAmount=1, transformQuantity={"round": "up"}),
        "transformQuantity.divideBy",
        "integer from 1",
    ),
    (
        per_unit(unitAmount=1, transformQuantity={"divideBy": 0, "round": "up"}),
        "transformQuantity.divideBy",
        "integer from 1",
    ),
    (
        per_unit(unitAmount=1, transformQuantity={"divideBy": -2, "round": "up"}),
        "transformQuantity.divideBy",
        "integer from 1",
    ),
    (
        per_unit(unitAmount=1, transformQuantity={"divideBy": True, "round": "up"}),
        "transformQuantity.divideBy",
        "integer from 1",
    ),
    (
        per_unit(unitAmount=1, transformQuantity={"divideBy": 2.5, "round": "up"}),
        "transformQuantity.divideBy",
        "integer from 1",
    ),
    (
        per_unit(unitAmount=1, transformQuantity={"divideBy": 2}),
        "transformQuantity.round",
        "'up' or 'down'",
    ),
    (
        per_unit(unitAmount=1, transformQuantity={"divideBy": 2, "round": "nearest"}),
        "transformQuantity.round",
        "'up' or 'down'",
    ),
    (
        per_unit(unitAmount=1, transformQuantity={"divideBy": 2, "round": "up", "roundTo": 1}),
        "transformQuantity.roundTo",
        "unknown field",
    ),
]


@pytest.mark.parametrize(
    ("data", "param", "message"), INVALID, ids=[f"{i}-{case[1]}" for i, case in enumerate(INVALID)]
)
def test_invalid_price_rejected(data: dict[str, Any], param: str, message: str) -> None:
    with pytest.raises(PriceDefinitionError) as info:
        parse_price_terms(data)
    assert info.value.param == param
    assert message in info.value.message
    assert str(info.value) == info.value.message


def test_price_definition_error_is_a_value_error() -> None:
    assert issubclass(PriceDefinitionError, ValueError)


# ---------------------------------------------------------------- properties

quantities = st.integers(min_value=0, max_value=MAX_TEST_QUANTITY)
small_quantities = st.integers(min_value=0, max_value=10**6)


@st.composite
def decimal_amounts(draw: st.DrawFn) -> Decimal:
    """Amounts across the whole valid range: up to 10^12 - 1 with up to 12 places."""
    places = draw(st.integers(min_value=0, max_value=12))
    scaled = draw(st.integers(min_value=0, max_value=10 ** (12 + places) - 1))
    return Decimal(scaled).scaleb(-places)


def amount_field(amount: Decimal, int_key: str, decimal_key: str, whole: bool) -> dict[str, Any]:
    if whole and amount == amount.to_integral_value():
        return {int_key: int(amount)}
    return {decimal_key: format(amount, "f")}


@st.composite
def tier_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    bounds = draw(st.lists(st.integers(min_value=1, max_value=2**62), max_size=8, unique=True))
    tiers: list[dict[str, Any]] = []
    for up_to in [*sorted(bounds), "inf"]:
        tier: dict[str, Any] = {"upTo": up_to}
        if draw(st.booleans()):
            tier |= amount_field(
                draw(decimal_amounts()), "unitAmount", "unitAmountDecimal", draw(st.booleans())
            )
        if draw(st.booleans()):
            tier |= amount_field(
                draw(decimal_amounts()), "flatAmount", "flatAmountDecimal", draw(st.booleans())
            )
        tiers.append(tier)
    return tiers


@st.composite
def price_requests(draw: st.DrawFn) -> dict[str, Any]:
    """Valid API request bodies of every shape."""
    currency = draw(st.sampled_from(["eur", "EUR", "jpy", "kwd", "usd"]))
    if draw(st.booleans()):
        data: dict[str, Any] = {
            "currency": currency,
            "billingScheme": draw(st.sampled_from(["per_unit", "usage"])),
        }
        data |= amount_field(
            draw(decimal_amounts()), "unitAmount", "unitAmountDecimal", draw(st.booleans())
        )
        if draw(st.booleans()):
            data["transformQuantity"] = {
                "divideBy": draw(st.integers(min_value=1, max_value=2**63 - 1)),
                "round": draw(st.sampled_from(["up", "down"])),
            }
        return data
    return {
        "currency": currency,
        "billingScheme": "tiered",
        "tiersMode": draw(st.sampled_from(["graduated", "volume"])),
        "tiers": draw(tier_lists()),
    }


@SETTINGS
@given(price_requests(), quantities)
def test_line_amount_never_raises_for_valid_terms(data: dict[str, Any], quantity: int) -> None:
    amount = line_amount(parse_price_terms(data), quantity)
    assert isinstance(amount, int)
    assert amount >= 0


@SETTINGS
@given(price_requests())
def test_terms_to_json_round_trips(data: dict[str, Any]) -> None:
    terms = parse_price_terms(data)
    document = terms_to_json(terms)
    assert parse_price_terms(document) == terms
    assert parse_price_terms(json.loads(json.dumps(document))) == terms


@SETTINGS
@given(price_requests())
def test_render_terms_reads_back_what_was_written(data: dict[str, Any]) -> None:
    """Every amount the request gave is shown with the same value, in both of its forms."""
    shown = render_terms(parse_price_terms(data))
    assert shown["currency"] == data["currency"].lower()
    written = [(data, shown)]
    if data["billingScheme"] == "tiered":
        assert shown["tiersMode"] == data["tiersMode"]
        assert [t["upTo"] for t in shown["tiers"]] == [t["upTo"] for t in data["tiers"]]
        written = list(zip(data["tiers"], shown["tiers"], strict=True))
    else:
        assert shown["transformQuantity"] == data.get("transformQuantity")
    for given_, out in written:
        for kind in ("unit", "flat") if given_ is not data else ("unit",):
            whole, dec = f"{kind}Amount", f"{kind}AmountDecimal"
            value = Decimal(str(given_.get(whole, given_.get(dec, 0))))
            assert Decimal(out[dec]) == value
            assert out[whole] == (int(value) if value == value.to_integral_value() else None)
            if whole in given_:
                assert out[whole] == given_[whole]


@SETTINGS
@given(tier_lists(), quantities, quantities)
def test_graduated_is_monotone(tiers: list[dict[str, Any]], a: int, b: int) -> None:
    terms = parse_price_terms(tiered(tiers, mode="graduated"))
    low, high = sorted((a, b))
    assert line_amount(terms, low) <= line_amount(terms, high)


@SETTINGS
@given(tier_lists(), small_quantities)
def test_graduated_is_monotone_near_boundaries(tiers: list[dict[str, Any]], q: int) -> None:
    terms = parse_price_terms(tiered(tiers, mode="graduated"))
    assert line_amount(terms, q) <= line_amount(terms, q + 1)


@SETTINGS
@given(decimal_amounts(), quantities, st.sampled_from(["graduated", "volume"]))
def test_single_inf_tier_equals_per_unit(unit: Decimal, quantity: int, mode: str) -> None:
    tier = {"upTo": "inf", "unitAmountDecimal": format(unit, "f")}
    as_tiers = parse_price_terms(tiered([tier], mode=mode))
    as_unit = parse_price_terms(per_unit(unitAmountDecimal=format(unit, "f")))
    assert line_amount(as_tiers, quantity) == line_amount(as_unit, quantity)


@SETTINGS
@given(
    decimal_amounts(),
    quantities,
    st.none()
    | st.tuples(st.integers(min_value=1, max_value=10**6), st.sampled_from(["up", "down"])),
)
def test_per_unit_matches_fraction_reference(
    unit: Decimal, quantity: int, transform: tuple[int, str] | None
) -> None:
    data = per_unit(unitAmountDecimal=format(unit, "f"))
    packages = Fraction(quantity)
    if transform is not None:
        divide_by, rounding = transform
        data["transformQuantity"] = {"divideBy": divide_by, "round": rounding}
        exact = Fraction(quantity, divide_by)
        packages = Fraction(math.ceil(exact) if rounding == "up" else math.floor(exact))
    expected = half_up(packages * Fraction(format(unit, "f")))
    assert line_amount(parse_price_terms(data), quantity) == expected


@SETTINGS
@given(tier_lists(), quantities)
def test_graduated_and_volume_match_fraction_reference(
    tiers: list[dict[str, Any]], quantity: int
) -> None:
    graduated = parse_price_terms(tiered(tiers, mode="graduated"))
    exact_graduated, lower = Fraction(0), 0
    for tier in graduated.tiers:
        upper = quantity if tier.up_to is None else min(quantity, tier.up_to)
        if upper > lower:
            exact_graduated += (upper - lower) * Fraction(tier.unit_amount)
            exact_graduated += Fraction(tier.flat_amount)
            lower = upper
    assert line_amount(graduated, quantity) == half_up(exact_graduated)

    volume = parse_price_terms(tiered(tiers, mode="volume"))
    tier = next(t for t in volume.tiers if t.up_to is None or quantity <= t.up_to)
    exact_volume = quantity * Fraction(tier.unit_amount) + Fraction(tier.flat_amount)
    assert line_amount(volume, quantity) == half_up(exact_volume)


@st.composite
def decimal_quantities(draw: st.DrawFn, bounds: tuple[int, ...] = ()) -> Decimal:
    """Decimal quantities with up to 12 places, often just around a tier bound."""
    places = draw(st.integers(min_value=0, max_value=12))
    fraction = draw(st.integers(min_value=0, max_value=10**places - 1)) if places else 0
    near = draw(st.booleans())
    if bounds and near:
        whole = draw(st.sampled_from(bounds)) + draw(st.integers(min_value=-1, max_value=0))
    else:
        whole = draw(quantities)
    whole = max(0, min(whole, MAX_TEST_QUANTITY - 1))
    return Decimal(whole) + Decimal(fraction).scaleb(-places)


@SETTINGS
@given(
    decimal_amounts(),
    decimal_quantities(),
    st.none()
    | st.tuples(st.integers(min_value=1, max_value=10**6), st.sampled_from(["up", "down"])),
)
def test_per_unit_decimal_quantities_match_fraction_reference(
    unit: Decimal, quantity: Decimal, transform: tuple[int, str] | None
) -> None:
    data = per_unit(unitAmountDecimal=format(unit, "f"))
    packages = Fraction(str(quantity))
    if transform is not None:
        divide_by, rounding = transform
        data["transformQuantity"] = {"divideBy": divide_by, "round": rounding}
        exact = Fraction(str(quantity)) / divide_by
        packages = Fraction(math.ceil(exact) if rounding == "up" else math.floor(exact))
    expected = half_up(packages * Fraction(format(unit, "f")))
    assert line_amount(parse_price_terms(data), quantity) == expected


@SETTINGS
@given(tier_lists(), st.data())
def test_tiers_with_decimal_quantities_match_fraction_reference(
    tiers: list[dict[str, Any]], draw: st.DataObject
) -> None:
    """Slices and the volume tier are found on the exact quantity, reckoned here in
    fractions from the request's own text, not from the parsed terms."""
    bounds = tuple(t["upTo"] for t in tiers if t["upTo"] != "inf")
    quantity = draw.draw(decimal_quantities(bounds))
    q = Fraction(str(quantity))

    def unit(t: dict[str, Any], kind: str) -> Fraction:
        return Fraction(str(t.get(f"{kind}Amount", t.get(f"{kind}AmountDecimal", 0))))

    exact_graduated, lower = Fraction(0), Fraction(0)
    for t in tiers:
        upper = q if t["upTo"] == "inf" else min(q, Fraction(t["upTo"]))
        if upper > lower:
            exact_graduated += (upper - lower) * unit(t, "unit") + unit(t, "flat")
            lower = upper
    graduated = parse_price_terms(tiered(tiers, mode="graduated"))
    assert line_amount(graduated, quantity) == half_up(exact_graduated)

    chosen = next(t for t in tiers if t["upTo"] == "inf" or q <= t["upTo"])
    exact_volume = q * unit(chosen, "unit") + unit(chosen, "flat")
    volume = parse_price_terms(tiered(tiers, mode="volume"))
    assert line_amount(volume, quantity) == half_up(exact_volume)


@SETTINGS
@given(tier_lists(), decimal_quantities(), decimal_quantities())
def test_graduated_is_monotone_in_decimal_quantities(
    tiers: list[dict[str, Any]], a: Decimal, b: Decimal
) -> None:
    terms = parse_price_terms(tiered(tiers, mode="graduated"))
    low, high = sorted((a, b))
    assert line_amount(terms, low) <= line_amount(terms, high)


def test_dataclasses_are_frozen_values() -> None:
    tier = Tier(up_to=None, unit_amount=Decimal("0.5"))
    assert tier.flat_amount == 0
    assert TransformQuantity(divide_by=2, round="up") == TransformQuantity(2, "up")
    with pytest.raises(AttributeError):
        tier.up_to = 5  # type: ignore[misc]


# ---------------------------------------------------------------- proration


@pytest.mark.parametrize(
    ("data", "quantity", "remaining", "period", "amount"),
    [
        pytest.param(per_unit(unitAmount=1000), 3, 15, 30, 1500, id="half of 3 x 10.00"),
        pytest.param(per_unit(unitAmount=1000), 3, 30, 30, 3000, id="whole period"),
        pytest.param(per_unit(unitAmount=1000), 3, 0, 30, 0, id="nothing left"),
        pytest.param(per_unit(unitAmount=100), 1, 1, 3, 33, id="a third: 33.33 -> 33"),
        pytest.param(per_unit(unitAmount=100), 1, 2, 3, 67, id="two thirds: 66.67 -> 67"),
        pytest.param(per_unit(unitAmount=1), 1, 1, 2, 1, id="0.5 rounds half up"),
        pytest.param(VOLUME, 6, 10, 20, 1950, id="volume 6 = 3900, half"),
    ],
)
def test_prorated_amount_examples(
    data: dict[str, Any], quantity: int, remaining: int, period: int, amount: int
) -> None:
    assert prorated_amount(parse_price_terms(data), quantity, remaining, period) == amount


@pytest.mark.parametrize(("remaining", "period"), [(-1, 30), (31, 30), (0, 0), (1, -5)])
def test_prorated_amount_refuses_bad_times(remaining: int, period: int) -> None:
    with pytest.raises(ValueError, match="within a positive period"):
        prorated_amount(parse_price_terms(per_unit(unitAmount=1)), 1, remaining, period)


@SETTINGS
@given(price_requests(), small_quantities, st.integers(min_value=1, max_value=10**8), st.data())
def test_prorated_amount_lies_between_zero_and_the_full_amount(
    data: dict[str, Any], quantity: int, period: int, draw: st.DataObject
) -> None:
    remaining = draw.draw(st.integers(min_value=0, max_value=period))
    terms = parse_price_terms(data)
    full = prorated_amount(terms, quantity, period, period)
    assert full == line_amount(terms, quantity)
    assert 0 <= prorated_amount(terms, quantity, remaining, period) <= full


@SETTINGS
@given(decimal_amounts(), small_quantities, st.integers(min_value=1, max_value=10**8), st.data())
def test_prorated_amount_matches_fraction_reference(
    unit: Decimal, quantity: int, period: int, draw: st.DataObject
) -> None:
    remaining = draw.draw(st.integers(min_value=0, max_value=period))
    terms = parse_price_terms(per_unit(unitAmountDecimal=format(unit, "f")))
    expected = half_up(quantity * Fraction(format(unit, "f")) * Fraction(remaining, period))
    assert prorated_amount(terms, quantity, remaining, period) == expected


def test_stored_terms_render_once_per_document_whatever_the_key_order() -> None:
    from domain.pricing import _rendered, render_stored_terms, render_terms, terms_to_json

    terms = parse_price_terms(
        {
            "currency": "eur",
            "billingScheme": "tiered",
            "tiersMode": "graduated",
            "tiers": [
                {"upTo": 5, "unitAmountDecimal": "0.25", "flatAmount": 100},
                {"upTo": "inf", "unitAmount": 2},
            ],
        }
    )
    stored = terms_to_json(terms)
    _rendered.cache_clear()
    assert render_stored_terms(stored) == render_terms(terms)
    assert render_stored_terms(dict(reversed(list(stored.items())))) == render_terms(terms)
    assert _rendered.cache_info().hits == 1
