"""Every pricing model billed through a real invoice, and bad price definitions refused
with a 400 that names the field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from aggregator.worker import Aggregator
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import (
    FEB,
    T0,
    advance,
    clocked_subscription,
    invoices,
    lines_by_price,
    price,
    usage,
)

VOLUME = {
    "billingScheme": "tiered",
    "tiersMode": "volume",
    "tiers": [
        {"upTo": 5, "unitAmount": 700},
        {"upTo": 10, "unitAmount": 650},
        {"upTo": "inf", "unitAmount": 600},
    ],
}
# 1500 units: 100 × 10 + 500 flat, 900 × 5 + 1000 flat, 500 × 1 = 7500
GRADUATED = {
    "billingScheme": "tiered",
    "tiersMode": "graduated",
    "tiers": [
        {"upTo": 100, "unitAmount": 10, "flatAmount": 500},
        {"upTo": 1000, "unitAmount": 5, "flatAmount": 1000},
        {"upTo": "inf", "unitAmountDecimal": "1"},
    ],
}
PACKAGE = {
    "billingScheme": "per_unit",
    "unitAmount": 250,
    "transformQuantity": {"divideBy": 1000, "round": "up"},
}


async def test_each_pricing_model_on_one_invoice(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    models: list[tuple[dict[str, Any], int, int]] = [  # (pricing, usage, amount)
        ({"billingScheme": "usage", "unitAmountDecimal": "0.2"}, 18420, 3684),
        ({"unitAmountDecimal": "0.05"}, 30, 2),  # 1.5 → 2, half up
        (VOLUME, 6, 3900),  # all 6 at tier 2's 650
        (GRADUATED, 1500, 7500),
        (PACKAGE, 1001, 500),  # 2 packages of 1000
    ]
    prices = [await price(client, **pricing) for pricing, _, _ in models]
    sub = await clocked_subscription(client, [{"price": p["id"]} for p in prices])
    items = {i["price"]["id"]: i["id"] for i in sub["items"]["data"]}
    for p, (_, quantity, _) in zip(prices, models, strict=True):
        await usage(client, items[p["id"]], quantity, T0 + 60)
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()

    [invoice] = await invoices(client, sub["id"])
    assert invoice["status"] == "paid"
    assert invoice["billingReason"] == "subscription_cycle"
    lines = lines_by_price(invoice)
    for p, (_, quantity, amount) in zip(prices, models, strict=True):
        line = lines[p["id"]]
        assert (line["quantity"], line["amount"]) == (quantity, amount), p
        assert line["period"] == {"start": T0, "end": FEB}
        assert line["subscriptionItem"] == items[p["id"]]
    assert lines[prices[0]["id"]]["unitAmountDecimal"] == "0.2"
    assert lines[prices[2]["id"]]["unitAmountDecimal"] is None  # tiered: no unit price
    assert invoice["total"] == invoice["subtotal"] == sum(a for _, _, a in models)


@pytest.mark.parametrize(
    ("currency", "unit", "quantity", "total"),
    [
        ("JPY", {"unitAmount": 3}, 1228, 3684),  # exponent 0: yen
        ("KWD", {"unitAmountDecimal": "0.5"}, 7, 4),  # exponent 3: 0.0035 → 0.004
        ("IQD", {"unitAmount": 1250}, 2, 2500),  # ISO 3 (CLDR says 0)
    ],
)
async def test_amounts_are_minor_units_of_the_currency(
    client: httpx.AsyncClient,
    aggregator: Aggregator,
    invoicer: Invoicer,
    currency: str,
    unit: dict[str, Any],
    quantity: int,
    total: int,
) -> None:
    p = await price(client, currency=currency, **unit)
    assert p["currency"] == currency.lower()
    sub = await clocked_subscription(client, [{"price": p["id"]}])
    await usage(client, sub["items"]["data"][0]["id"], quantity, T0 + 60)
    await aggregator.drain()
    await advance(client, sub, FEB)
    await invoicer.tick()
    [invoice] = await invoices(client, sub["id"])
    assert (invoice["currency"], invoice["total"]) == (currency.lower(), total)


@pytest.mark.parametrize(
    ("pricing", "param", "words"),
    [
        (
            {
                "billingScheme": "tiered",
                "tiersMode": "graduated",
                "tiers": [
                    {"upTo": 10, "unitAmount": 5},
                    {"upTo": 5, "unitAmount": 4},
                    {"upTo": "inf", "unitAmount": 3},
                ],
            },
            "tiers[1].upTo",
            "greater than the previous",
        ),
        (
            {
                "billingScheme": "tiered",
                "tiersMode": "volume",
                "tiers": [{"upTo": 10, "unitAmount": 5}],
            },
            "tiers[0].upTo",
            "last tier must have upTo 'inf'",
        ),
        (
            {
                "billingScheme": "tiered",
                "tiersMode": "volume",
                "tiers": [{"upTo": "inf", "unitAmount": 5}],
                "transformQuantity": {"divideBy": 10, "round": "up"},
            },
            "transformQuantity",
            "cannot be combined with tiers",
        ),
        (
            {"billingScheme": "tiered", "tiers": [{"upTo": "inf", "unitAmount": 5}]},
            "tiersMode",
            "graduated' or 'volume'",
        ),
        ({"unitAmountDecimal": "0.0000000000001"}, "unitAmountDecimal", "at most 12 decimal"),
        ({"unitAmount": 5, "unitAmountDecimal": "5"}, "unitAmountDecimal", "not both"),
        (
            {"unitAmount": 5, "transformQuantity": {"divideBy": 0, "round": "up"}},
            "transformQuantity.divideBy",
            "divideBy",
        ),
        ({"unitAmount": 5, "currency": "ZZZ"}, "currency", "not a known ISO 4217"),
        ({"unitAmount": 5, "currency": "XAU"}, "currency", "no minor unit"),
    ],
)
async def test_bad_price_definitions_are_400s(
    client: httpx.AsyncClient, pricing: dict[str, Any], param: str, words: str
) -> None:
    product = await post(client, "/v1/products", {"name": "API access"})
    body = {
        "product": product["id"],
        "currency": "EUR",
        "recurring": {"interval": "month", "usageType": "metered"},
    } | pricing
    response = await client.post("/v1/prices", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert words in error["message"]
