"""Every field of every create and update body reads back as written: in the response, on
GET and in the list. The bodies (``roundtrip_bodies``) are checked against the request models
first, so a field added to a model without a body that sets it (and so without a read-back
check) fails here."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import asyncpg
import httpx
import pytest
from pydantic import BaseModel

from domain.pricing import MAX_TIERS, TIER_KEYS, TRANSFORM_KEYS
from infra.ids import new_id
from tests.support.api import post
from tests.support.roundtrip_bodies import (
    BODIES,
    CARDS,
    CLOCK_ADVANCES,
    CLOCKS,
    CUSTOMER_UPDATES,
    CUSTOMERS,
    ENDPOINT_UPDATES,
    ENDPOINTS,
    PRICES,
    PRODUCTS,
    SUBSCRIPTION_UPDATES,
    SUBSCRIPTIONS,
    Body,
    expect_customer,
    expect_price,
    expect_subscription,
    fill,
)


def assert_contains(actual: Any, expected: Any, path: str = "") -> None:
    """``actual`` has every key of ``expected`` with an equal value (same JSON type too:
    ``5`` is not ``"5"``); lists match element by element."""
    where = path or "object"
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: {actual!r} is not an object"
        for key, value in expected.items():
            assert key in actual, f"{where}: no {key!r} in {sorted(actual)}"
            assert_contains(actual[key], value, f"{path}.{key}" if path else key)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: {actual!r} is not a list"
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, {len(expected)} sent"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_contains(a, e, f"{where}[{i}]")
    else:
        assert type(actual) is type(expected) and actual == expected, (
            f"{where}: wrote {expected!r}, read back {actual!r}"
        )


# ---------------------------------------------------------------- the bodies cover the models


def _nested(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested(arg)
        if found is not None:
            return found
    return None


def _literals(annotation: Any) -> set[Any]:
    if typing.get_origin(annotation) is Literal:
        return set(typing.get_args(annotation))
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return set().union(*(_literals(a) for a in typing.get_args(annotation)))
    return set()


def _values(bodies: list[Body], name: str) -> list[Any]:
    return [b[name] for b in bodies if name in b]


def uncovered(model: type[BaseModel], bodies: list[Body], path: str = "") -> list[str]:
    """Fields no body sets, and ``Literal`` values no body uses, nested models included."""
    missing: list[str] = []
    for name, field in model.model_fields.items():
        values = _values(bodies, name)
        if not values:
            missing.append(path + name)
            continue
        missing += [f"{path}{name}={v!r}" for v in _literals(field.annotation) if v not in values]
        nested = _nested(field.annotation)
        if nested is not None:
            flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
            missing += uncovered(nested, [x for x in flat if isinstance(x, dict)], f"{path}{name}.")
    return missing


@pytest.mark.parametrize("model", list(BODIES), ids=lambda m: m.__name__)
def test_bodies_set_every_field_of_the_model(model: type[BaseModel]) -> None:
    assert uncovered(model, BODIES[model]) == []


def test_price_bodies_cover_every_pricing_shape() -> None:
    tiers = [t for p in PRICES for t in p.get("tiers", [])]
    assert set().union(*tiers) == TIER_KEYS
    assert set().union(*_values(PRICES, "transformQuantity")) == TRANSFORM_KEYS
    assert {t["round"] for t in _values(PRICES, "transformQuantity")} == {"up", "down"}
    assert set(_values(PRICES, "tiersMode")) == {"graduated", "volume"}
    assert {type(v) for v in _values(PRICES, "unitAmountDecimal")} == {str, int}


# ---------------------------------------------------------------- read-back through the API


async def get(client: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def listed(client: httpx.AsyncClient, path: str, ident: str) -> dict[str, Any]:
    listing = await get(client, f"{path}?limit=100")
    found = [o for o in listing["data"] if o["id"] == ident]
    assert len(found) == 1, f"{ident} is not in {path}"
    return found[0]


async def check_everywhere(
    client: httpx.AsyncClient, path: str, obj: dict[str, Any], expected: Body
) -> dict[str, Any]:
    """``expected`` holds in ``obj`` (a response), on GET and in the list; GET shows what the
    response showed."""
    assert_contains(obj, expected, "response")
    fetched = await get(client, f"{path}/{obj['id']}")
    assert_contains(fetched, expected, "GET")
    assert_contains(await listed(client, path, obj["id"]), expected, "list")
    return fetched


async def test_products_read_back(client: httpx.AsyncClient) -> None:
    for body in PRODUCTS:
        created = await post(client, "/v1/products", body)
        expected = {"description": None, "metadata": {}} | body
        assert await check_everywhere(client, "/v1/products", created, expected) == created


async def test_prices_read_back(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    product = await post(client, "/v1/products", {"name": "Catalog"})
    meter = new_id("mtr")
    await pool.execute(
        "INSERT INTO meters (id, account_id, livemode, display_name, event_name, formula,"
        " created, updated) SELECT $1, account_id, false, 'Calls', $1, 'sum', 0, 0"
        " FROM products WHERE id = $2",
        meter,
        product["id"],
    )
    for template in PRICES:
        body = fill(template, {"product": product["id"], "meter": meter})
        created = await post(client, "/v1/prices", body)
        fetched = await check_everywhere(client, "/v1/prices", created, expect_price(body))
        assert fetched == created


async def test_the_guides_whole_cent_rate_reads_back_in_both_forms(
    client: httpx.AsyncClient,
) -> None:
    product = await post(client, "/v1/products", {"name": "API access"})
    body = {"product": product["id"], "currency": "EUR", "unitAmount": 5}
    created = await post(client, "/v1/prices", body | {"recurring": {"interval": "month"}})
    for shown in (created, await get(client, f"/v1/prices/{created['id']}")):
        assert (shown["unitAmount"], shown["unitAmountDecimal"]) == (5, "5")


async def test_the_api_and_the_parser_share_one_tier_limit(client: httpx.AsyncClient) -> None:
    product = await post(client, "/v1/products", {"name": "Tiers"})

    def body(count: int) -> Body:
        tiers: list[Body] = [{"upTo": i + 1, "unitAmount": 1} for i in range(count - 1)]
        return {
            "product": product["id"],
            "currency": "eur",
            "billingScheme": "tiered",
            "tiersMode": "graduated",
            "tiers": [*tiers, {"upTo": "inf", "unitAmount": 1}],
            "recurring": {"interval": "month"},
        }

    created = await post(client, "/v1/prices", body(MAX_TIERS))
    assert len(created["tiers"]) == MAX_TIERS
    refused = await client.post("/v1/prices", json=body(MAX_TIERS + 1))
    assert refused.status_code in (400, 422), refused.text
    assert refused.json()["error"]["param"] == "tiers"


async def check_card(client: httpx.AsyncClient, customer: dict[str, Any], method: str) -> None:
    pm_id = customer["defaultPaymentMethod"]
    assert pm_id.startswith("pm_") and customer["invoiceSettings"]["defaultPaymentMethod"] == pm_id
    pm = await get(client, f"/v1/payment_methods/{pm_id}")
    assert (pm["card"]["brand"], pm["card"]["last4"]) == CARDS[method]
    assert pm["customer"] == customer["id"] and pm["type"] == "card"


async def test_customers_read_back(client: httpx.AsyncClient) -> None:
    created = []
    for body in CUSTOMERS:
        customer = await post(client, "/v1/customers", body)
        fetched = await check_everywhere(client, "/v1/customers", customer, expect_customer(body))
        assert fetched == customer
        if "paymentMethod" in body:
            await check_card(client, customer, body["paymentMethod"])
        else:
            assert customer["defaultPaymentMethod"] is None
        created.append(customer)
    before, path = created[0], f"/v1/customers/{created[0]['id']}"
    for body in CUSTOMER_UPDATES:
        updated = await post(client, path, body)
        expected = expect_customer(body, before)
        assert await check_everywhere(client, "/v1/customers", updated, expected) == updated
        if body.get("paymentMethod"):
            assert updated["defaultPaymentMethod"] != before["defaultPaymentMethod"]
            await check_card(client, updated, body["paymentMethod"])
        elif "paymentMethod" not in body:
            assert updated["defaultPaymentMethod"] == before["defaultPaymentMethod"]
        before = updated


async def test_subscriptions_read_back(client: httpx.AsyncClient) -> None:
    product = await post(client, "/v1/products", {"name": "Plan"})
    ids = {"product": product["id"]}
    for name, usage in [
        ("licensed", "licensed"),
        ("licensed2", "licensed"),
        ("metered", "metered"),
        ("metered2", "metered"),
    ]:
        recurring = {"interval": "month", "usageType": usage}
        price = await post(
            client,
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "EUR",
                "unitAmount": 100,
                "recurring": recurring,
            },
        )
        ids[name] = price["id"]
    metered = {ids["metered"], ids["metered2"]}
    customer = await post(client, "/v1/customers", {"paymentMethod": "pm_card_visa"})
    clock = await post(client, "/v1/test_helpers/test_clocks", {"frozenTime": 1_767_225_600})
    ids |= {"customer": customer["id"], "clock": clock["id"]}

    created = []
    for template in SUBSCRIPTIONS:
        body = fill(template, ids)
        sub = await post(client, "/v1/subscriptions", body)
        await check_everywhere(client, "/v1/subscriptions", sub, expect_subscription(body, metered))
        for item in sub["items"]["data"]:
            price = await get(client, f"/v1/prices/{item['price']['id']}")
            assert item["price"] == price
        created.append(sub)
    before, path = created[0], f"/v1/subscriptions/{created[0]['id']}"
    for template in SUBSCRIPTION_UPDATES:
        body = fill(template, ids)
        updated = await post(client, path, body)
        expected = expect_subscription(body, metered, before)
        before = await check_everywhere(client, "/v1/subscriptions", updated, expected)


async def test_webhook_endpoints_read_back(client: httpx.AsyncClient) -> None:
    created = []
    for body in ENDPOINTS:
        endpoint = await post(client, "/v1/webhook_endpoints", body)
        assert endpoint["secret"].startswith("whsec_")
        expected = {"description": None, "status": "enabled"} | body
        fetched = await check_everywhere(client, "/v1/webhook_endpoints", endpoint, expected)
        assert fetched == {k: v for k, v in endpoint.items() if k != "secret"}
        created.append(endpoint)
    path = f"/v1/webhook_endpoints/{created[0]['id']}"
    for body in ENDPOINT_UPDATES:
        updated = await post(client, path, body)
        assert await check_everywhere(client, "/v1/webhook_endpoints", updated, body) == updated


async def test_test_clocks_read_back(client: httpx.AsyncClient) -> None:
    path = "/v1/test_helpers/test_clocks"
    clocks = []
    for body in CLOCKS:
        clock = await post(client, path, body)
        expected = {"name": None} | body
        assert_contains(clock, expected, "response")
        fetched = await get(client, f"{path}/{clock['id']}")
        assert_contains(fetched, expected, "GET")
        assert fetched == clock
        clocks.append(clock)
    for body in CLOCK_ADVANCES:
        advanced = await post(client, f"{path}/{clocks[0]['id']}/advance", body)
        assert_contains(advanced, body, "response")
        assert_contains(await get(client, f"{path}/{clocks[0]['id']}"), body, "GET")
