"""Hostile bodies and parameters at the control plane: bodies that are not UTF-8, not JSON
(NaN, numbers too long to read) or nested too deep; numbers past every field's range; text
past every length cap, also inside tiers, transformQuantity and recurring. Each is a 400
naming the field (or ``json_invalid`` for the body as a whole) and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from control.common import (
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    MAX_PARAM_LENGTH,
)
from control.routing import MAX_JSON_DEPTH, parse_json_body
from tests.support.api import post


def _refused(response: httpx.Response, param: str | None, code: str | None = None) -> str:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error", error
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error
    assert len(error["message"]) < 600, error  # a refusal names a value, it does not echo it
    message: str = error["message"]
    return message


async def _raw(client: httpx.AsyncClient, url: str, raw: bytes) -> httpx.Response:
    return await client.post(url, content=raw, headers={"content-type": "application/json"})


async def _count(client: httpx.AsyncClient, url: str) -> int:
    response = await client.get(url, params={"limit": 100})
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


def _deep(depth: int) -> bytes:
    return b"[" * depth + b'"x"' + b"]" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 900, 5000, 200_000])
async def test_deep_nesting_is_refused_as_a_whole(client: httpx.AsyncClient, depth: int) -> None:
    message = _refused(
        await _raw(client, "/v1/products", b'{"name": ' + _deep(depth) + b"}"),
        None,
        "json_invalid",
    )
    assert f"deeper than {MAX_JSON_DEPTH} levels" in message
    assert await _count(client, "/v1/products") == 0


async def test_nesting_within_the_limit_reaches_the_fields(client: httpx.AsyncClient) -> None:
    # name at depth 1 holds a list nesting to the limit: the field is named, not the body
    body = b'{"name": ' + _deep(MAX_JSON_DEPTH - 1) + b"}"
    _refused(await _raw(client, "/v1/products", body), "name", "parameter_invalid")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"name": "\xff\xfe"}', "not valid UTF-8"),
        (b'{"name": "caf\xe9"}', "not valid UTF-8"),
        (b"\xef\xbb", "not valid UTF-8"),
        (b'{"name": NaN}', "NaN is not a JSON number"),
        (b'{"name": "a", "description": Infinity}', "Infinity is not a JSON number"),
        (b'{"name": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"name": "a", "metadata": {"k": ' + b"9" * 5000 + b"}}", "number is too long"),
        (b'{"name": "a"', "not valid JSON"),
    ],
)
async def test_bodies_that_are_not_json_are_refused(
    client: httpx.AsyncClient, raw: bytes, says: str
) -> None:
    message = _refused(await _raw(client, "/v1/products", raw), None, "json_invalid")
    assert message.startswith("request body is not valid JSON"), message
    assert says in message, message
    assert await _count(client, "/v1/products") == 0


def test_parse_json_body_keeps_what_json_allows() -> None:
    assert parse_json_body(b'{"a": [1, 2.5, "\\u00e9", null, true], "b": {}}') == {
        "a": [1, 2.5, "é", None, True],
        "b": {},
    }
    assert parse_json_body(b"9" * 4000) == int("9" * 4000)
    assert parse_json_body(b'"\\ud800"') == "\ud800"  # refused later, naming the field


async def _product(client: httpx.AsyncClient) -> str:
    product_id: str = (await post(client, "/v1/products", {"name": "API"}))["id"]
    return product_id


def _price(product: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "product": product,
        "currency": "eur",
        "recurring": {"interval": "month", "usageType": "metered"},
        "billingScheme": "usage",
        "unitAmount": 5,
    }
    body.update(fields)
    return body


def _tiered(product: str, tiers: Any) -> dict[str, Any]:
    return _price(product, billingScheme="tiered", tiersMode="volume", unitAmount=None, tiers=tiers)


HUGE = 10**4000  # within what JSON can carry here, beyond every field's range


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"unitAmount": HUGE}, "unitAmount"),
        ({"unitAmount": -1}, "unitAmount"),
        ({"unitAmount": True}, "unitAmount"),
        ({"unitAmount": None, "unitAmountDecimal": 5.0}, "unitAmountDecimal"),
        ({"unitAmount": None, "unitAmountDecimal": str(HUGE)[:60]}, "unitAmountDecimal"),
        ({"unitAmount": None, "unitAmountDecimal": "1" * 65}, "unitAmountDecimal"),
        ({"unitAmount": None, "unitAmountDecimal": 0.2}, "unitAmountDecimal"),
        ({"unitAmount": None, "unitAmountDecimal": [1]}, "unitAmountDecimal"),
        ({"recurring": {"interval": "month", "intervalCount": HUGE}}, "recurring.intervalCount"),
        ({"recurring": {"interval": "month\x00"}}, "recurring.interval"),
        ({"recurring": {"interval": "day", "usageType": "x" * 10_000}}, "recurring.usageType"),
        (
            {"transformQuantity": {"divideBy": HUGE, "round": "up"}},
            "transformQuantity.divideBy",
        ),
        ({"transformQuantity": {"divideBy": 0, "round": "up"}}, "transformQuantity.divideBy"),
        ({"transformQuantity": {"divideBy": 2, "round": "up\x00"}}, "transformQuantity.round"),
        (
            {"transformQuantity": {"divideBy": 2, "round": "up", "x" * 5000: 1}},
            "transformQuantity." + "x" * 5000,
        ),
        ({"nickname": "n" * 501}, "nickname"),
        ({"metadata": {"k": "v" * (MAX_METADATA_VALUE_LENGTH + 1)}}, "metadata.k"),
        ({"metadata": {"k" * (MAX_METADATA_KEY_LENGTH + 1): "v"}}, "metadata"),
        ({"metadata": {f"k{i}": "v" for i in range(MAX_METADATA_KEYS + 1)}}, "metadata"),
    ],
)
async def test_price_numbers_and_text_beyond_range(
    client: httpx.AsyncClient, change: dict[str, Any], param: str
) -> None:
    product = await _product(client)
    raw = json.dumps(_price(product, **change)).encode()
    _refused(await _raw(client, "/v1/prices", raw), param)
    assert await _count(client, "/v1/prices") == 0


@pytest.mark.parametrize(
    ("tiers", "param"),
    [
        ([{"upTo": HUGE}, {"upTo": "inf"}], "tiers[0].upTo"),
        ([{"upTo": 2**63}, {"upTo": "inf"}], "tiers[0].upTo"),
        ([{"upTo": 0}, {"upTo": "inf"}], "tiers[0].upTo"),
        ([{"upTo": "inf\x00"}], "tiers[0].upTo"),
        ([{"upTo": "x" * 100_000}], "tiers[0].upTo"),
        ([{"upTo": "inf", "unitAmountDecimal": "0.2\x00"}], "tiers[0].unitAmountDecimal"),
        ([{"upTo": "inf", "flatAmount": HUGE}], "tiers[0].flatAmount"),
        ([{"upTo": "inf", "flatAmountDecimal": "1e400"}], "tiers[0].flatAmountDecimal"),
        ([{"upTo": "inf", "unitAmountDecimal": "0." + "0" * 70}], "tiers[0].unitAmountDecimal"),
        ([{"upTo": "inf", "unit\x00": 1}], "tiers[0].unit\x00"),
        ([{"upTo": 5}, {"upTo": "inf", "unitAmount": [[[[1]]]]}], "tiers[1].unitAmount"),
        (["inf"], "tiers[0]"),
    ],
)
async def test_tier_numbers_and_text_beyond_range(
    client: httpx.AsyncClient, tiers: Any, param: str
) -> None:
    product = await _product(client)
    raw = json.dumps(_tiered(product, tiers)).encode()
    _refused(await _raw(client, "/v1/prices", raw), param)
    assert await _count(client, "/v1/prices") == 0


@pytest.mark.parametrize(
    ("url", "body", "param"),
    [
        ("/v1/test_helpers/test_clocks", {"frozenTime": HUGE}, "frozenTime"),
        ("/v1/test_helpers/test_clocks", {"frozenTime": -1}, "frozenTime"),
        ("/v1/test_helpers/test_clocks", {"frozenTime": 1.5}, "frozenTime"),
        ("/v1/test_helpers/test_clocks", {"frozenTime": True}, "frozenTime"),
        ("/v1/test_helpers/test_clocks", {"frozenTime": "1750000000"}, "frozenTime"),
        ("/v1/customers", {"name": 5}, "name"),
        ("/v1/customers", {"name": "x" * 501}, "name"),
        ("/v1/customers", {"email": "x" * 501}, "email"),
        ("/v1/customers", {"id": "cust_" + "a" * 65}, "id"),
        ("/v1/customers", {"metadata": {"": "v"}}, "metadata"),
        (
            "/v1/webhook_endpoints",
            {"url": "https://example.com/" + "a" * 2100, "enabledEvents": ["*"]},
            "url",
        ),
        (
            "/v1/webhook_endpoints",
            {"url": "https://example.com/h", "enabledEvents": ["e" * 101]},
            "enabledEvents[0]",
        ),
        (
            "/v1/webhook_endpoints",
            {"url": "https://example.com/h", "enabledEvents": ["*"] * 101},
            "enabledEvents",
        ),
    ],
)
async def test_other_fields_beyond_range(
    client: httpx.AsyncClient, url: str, body: dict[str, Any], param: str
) -> None:
    _refused(await _raw(client, url, json.dumps(body).encode()), param)
    assert await _count(client, url.replace("test_helpers/test_clocks", "products")) == 0


async def test_subscription_quantities_beyond_range(client: httpx.AsyncClient) -> None:
    product = await _product(client)
    price = await post(
        client,
        "/v1/prices",
        {
            "product": product,
            "currency": "eur",
            "unitAmount": 5,
            "recurring": {"interval": "month"},
        },
    )
    customer = await post(client, "/v1/customers", {"name": "Ada"})
    for quantity in (HUGE, -1, 10**9 + 1, 2.5, 2.0, [1], "1", True):
        body = {"customer": customer["id"], "items": [{"price": price["id"], "quantity": quantity}]}
        _refused(
            await _raw(client, "/v1/subscriptions", json.dumps(body).encode()), "items[0].quantity"
        )
    assert await _count(client, "/v1/subscriptions") == 0


@pytest.mark.parametrize(
    ("url", "param"),
    [
        ("/v1/products?limit=0", "limit"),
        ("/v1/products?limit=101", "limit"),
        ("/v1/products?limit=" + "9" * 5000, "limit"),
        ("/v1/products?limit=ten", "limit"),
        ("/v1/products?startingAfter=" + "p" * (MAX_PARAM_LENGTH + 1), "startingAfter"),
        ("/v1/invoices?customer=" + "c" * (MAX_PARAM_LENGTH + 1), "customer"),
        ("/v1/invoices?status=nope", "status"),
        ("/v1/events?type=" + "t" * (MAX_PARAM_LENGTH + 1), "type"),
        ("/v1/products?" + "q" * (MAX_PARAM_LENGTH + 1) + "=1", "query"),
        ("/v1/products/" + "p" * (MAX_PARAM_LENGTH + 1), "id"),
        ("/v1/usage_records/dead_letters?reason=nope", "reason"),
        ("/v1/usage_records/summaries?subscriptionItem=", "subscriptionItem"),
        ("/v1/invoices?customer=a&customer=b", "customer"),
        ("/v1/invoices?custmer=cust_1", "custmer"),
        ("/v1/products?=1", "query"),
        ("/v1/products/prod_1?limit=1", "limit"),
    ],
)
async def test_query_and_path_parameters_beyond_range(
    client: httpx.AsyncClient, url: str, param: str
) -> None:
    _refused(await client.get(url), param)


async def test_an_empty_id_is_no_route(client: httpx.AsyncClient) -> None:
    """``/v1/customers/`` is not ``/v1/customers``: 404, never a redirect that would turn an
    update of an empty id into a create."""
    for response in (
        await client.post("/v1/customers/", json={"name": "Ada"}),
        await client.get("/v1/customers/"),
        await client.delete("/v1/subscriptions/"),
    ):
        assert response.status_code == 404, response.text
        assert response.json()["error"]["type"] == "invalid_request_error"
    assert await _count(client, "/v1/customers") == 0


@pytest.mark.parametrize(
    ("content_type", "raw", "says"),
    [
        ("text/plain", b'{"name": "a"}', "sent with Content-Type: application/json"),
        (None, b'{"name": "a"}', "sent with Content-Type: application/json"),
        ("application/json", b"", "a request body is required"),
        ("application/json", b"[]", "must be a JSON object"),
        ("application/json", b'"name"', "must be a JSON object"),
    ],
)
async def test_a_body_that_is_no_json_object(
    client: httpx.AsyncClient, content_type: str | None, raw: bytes, says: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/products", content=raw, headers=headers)
    assert says in _refused(response, None), response.text
