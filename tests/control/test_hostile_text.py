"""Hostile text (NUL characters, lone surrogates) in any string of a control-plane request is
refused with a 400 naming the field, and nothing is written — never a 5xx from Postgres."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from control.common import Metadata, Text, text_problem
from tests.support.api import metered_price, post, subscribe

NUL = "a\x00b"


def _refused(response: httpx.Response, param: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    return error


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with ``value`` at ``path`` (``items.0.price``)."""
    out: Any = json.loads(json.dumps(body))
    target = out
    parts = [int(p) if p.isdigit() else p for p in path.split(".")]
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value
    return dict(out)


def _raw(body: dict[str, Any], path: str) -> bytes:
    """``body`` as JSON with a lone surrogate escape (``\\ud800``) at ``path``: what a
    client's encoder can send but no UTF-8 text can hold."""
    marker = "LONE-SURROGATE-MARKER"
    return json.dumps(_with(body, path, f"x{marker}")).replace(marker, "\\ud800").encode()


async def _post_raw(client: httpx.AsyncClient, url: str, raw: bytes) -> httpx.Response:
    return await client.post(url, content=raw, headers={"content-type": "application/json"})


async def _count(client: httpx.AsyncClient, url: str) -> int:
    response = await client.get(url, params={"limit": 100})
    assert response.status_code == 200, response.text
    return len(response.json()["data"])


PRODUCT = {"name": "API", "description": "calls", "metadata": {"team": "core"}}
PRODUCT_FIELDS = [
    ("name", "name"),
    ("description", "description"),
    ("metadata.team", "metadata.team"),
]


@pytest.mark.parametrize(("path", "param"), PRODUCT_FIELDS)
async def test_product_create_refuses_hostile_text(
    client: httpx.AsyncClient, path: str, param: str
) -> None:
    error = _refused(await client.post("/v1/products", json=_with(PRODUCT, path, NUL)), param)
    assert "NUL" in error["message"]
    _refused(await _post_raw(client, "/v1/products", _raw(PRODUCT, path)), param)
    assert await _count(client, "/v1/products") == 0
    await post(client, "/v1/products", PRODUCT)
    assert await _count(client, "/v1/products") == 1


async def test_metadata_key_is_checked(client: httpx.AsyncClient) -> None:
    body = {"name": "API", "metadata": {NUL: "v"}}
    error = _refused(await client.post("/v1/products", json=body), "metadata")
    assert "key" in error["message"]
    raw = json.dumps({"name": "API", "metadata": {"KEY": "v"}}).replace("KEY", "\\udfff").encode()
    _refused(await _post_raw(client, "/v1/products", raw), "metadata")
    assert await _count(client, "/v1/products") == 0


PRICE_FIELDS = ["product", "currency", "unitAmountDecimal", "nickname", "metadata.k"]


@pytest.mark.parametrize("path", PRICE_FIELDS)
async def test_price_create_refuses_hostile_text(client: httpx.AsyncClient, path: str) -> None:
    product = await post(client, "/v1/products", {"name": "API"})
    body = {
        "product": product["id"],
        "currency": "EUR",
        "recurring": {"interval": "month", "usageType": "metered"},
        "billingScheme": "usage",
        "unitAmountDecimal": "0.2",
        "nickname": "calls",
        "metadata": {"k": "v"},
    }
    value = "E\x00R" if path == "currency" else NUL
    _refused(await client.post("/v1/prices", json=_with(body, path, value)), path)
    _refused(await _post_raw(client, "/v1/prices", _raw(body, path)), path)
    assert await _count(client, "/v1/prices") == 0
    await post(client, "/v1/prices", body)


CUSTOMER = {
    "id": "cust_hostile",
    "name": "Ada",
    "email": "ada@example.com",
    "paymentMethod": "pm_card_visa",
    "metadata": {"k": "v"},
}


@pytest.mark.parametrize("path", ["id", "name", "email", "paymentMethod", "metadata.k"])
async def test_customer_create_refuses_hostile_text(client: httpx.AsyncClient, path: str) -> None:
    _refused(await client.post("/v1/customers", json=_with(CUSTOMER, path, NUL)), path)
    _refused(await _post_raw(client, "/v1/customers", _raw(CUSTOMER, path)), path)
    assert await _count(client, "/v1/customers") == 0


@pytest.mark.parametrize("path", ["name", "email", "paymentMethod", "metadata.k"])
async def test_customer_update_refuses_hostile_text(client: httpx.AsyncClient, path: str) -> None:
    customer = await post(client, "/v1/customers", CUSTOMER)
    url = f"/v1/customers/{customer['id']}"
    update = {k: v for k, v in CUSTOMER.items() if k != "id"}
    _refused(await client.post(url, json=_with(update, path, NUL)), path)
    _refused(await _post_raw(client, url, _raw(update, path)), path)
    assert (await client.get(url)).json() == customer


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("customer", "customer"),
        ("items.0.price", "items[0].price"),
        ("items.0.id", "items[0].id"),
        ("testClock", "testClock"),
        ("metadata.k", "metadata.k"),
    ],
)
async def test_subscription_create_refuses_hostile_text(
    client: httpx.AsyncClient, path: str, param: str
) -> None:
    price = await metered_price(client)
    customer = await post(client, "/v1/customers", CUSTOMER)
    clock = await post(client, "/v1/test_helpers/test_clocks", {"frozenTime": 1_700_000_000})
    body = {
        "customer": customer["id"],
        "items": [{"price": price["id"], "id": "si_hostile"}],
        "testClock": clock["id"],
        "metadata": {"k": "v"},
    }
    _refused(await client.post("/v1/subscriptions", json=_with(body, path, NUL)), param)
    _refused(await _post_raw(client, "/v1/subscriptions", _raw(body, path)), param)
    assert await _count(client, "/v1/subscriptions") == 0
    await post(client, "/v1/subscriptions", body)


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("metadata.k", "metadata.k"),
        ("items.0.id", "items[0].id"),
        ("items.0.price", "items[0].price"),
    ],
)
async def test_subscription_update_refuses_hostile_text(
    client: httpx.AsyncClient, path: str, param: str
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    url = f"/v1/subscriptions/{sub['id']}"
    before = (await client.get(url)).json()
    body = {
        "metadata": {"k": "v"},
        "items": [{"id": sub["items"]["data"][0]["id"], "price": price["id"]}],
    }
    _refused(await client.post(url, json=_with(body, path, NUL)), param)
    _refused(await _post_raw(client, url, _raw(body, path)), param)
    assert (await client.get(url)).json() == before


ENDPOINT = {
    "url": "https://example.com/hook",
    "enabledEvents": ["*"],
    "description": "billing",
}
ENDPOINT_FIELDS = [
    ("url", "url"),
    ("enabledEvents.0", "enabledEvents[0]"),
    ("description", "description"),
]


@pytest.mark.parametrize(("path", "param"), ENDPOINT_FIELDS)
async def test_webhook_endpoint_create_refuses_hostile_text(
    client: httpx.AsyncClient, path: str, param: str
) -> None:
    value = "https://example.com/a\x00b" if path == "url" else NUL
    url = "/v1/webhook_endpoints"
    _refused(await client.post(url, json=_with(ENDPOINT, path, value)), param)
    _refused(await _post_raw(client, url, _raw(ENDPOINT, path)), param)
    assert await _count(client, url) == 0


@pytest.mark.parametrize(("path", "param"), ENDPOINT_FIELDS)
async def test_webhook_endpoint_update_refuses_hostile_text(
    client: httpx.AsyncClient, path: str, param: str
) -> None:
    created = await post(client, "/v1/webhook_endpoints", ENDPOINT)
    url = f"/v1/webhook_endpoints/{created['id']}"
    before = (await client.get(url)).json()
    value = "https://example.com/a\x00b" if path == "url" else NUL
    _refused(await client.post(url, json=_with(ENDPOINT, path, value)), param)
    _refused(await _post_raw(client, url, _raw(ENDPOINT, path)), param)
    assert (await client.get(url)).json() == before


async def test_resend_refuses_hostile_endpoint(client: httpx.AsyncClient) -> None:
    customer = await post(client, "/v1/customers", {"name": "Ada"})
    events = (await client.get("/v1/events")).json()["data"]
    assert events, customer
    url = f"/v1/events/{events[0]['id']}/resend"
    _refused(await client.post(url, json={"webhookEndpoint": NUL}), "webhookEndpoint")


async def test_test_clock_refuses_hostile_name(client: httpx.AsyncClient) -> None:
    url = "/v1/test_helpers/test_clocks"
    body = {"frozenTime": 1_700_000_000, "name": "clock"}
    _refused(await client.post(url, json=_with(body, "name", NUL)), "name")
    _refused(await _post_raw(client, url, _raw(body, "name")), "name")
    await post(client, url, body)


@pytest.mark.parametrize(
    "url",
    [
        "/v1/invoices?customer=%00",
        "/v1/invoices?subscription=a%00",
        "/v1/subscriptions?customer=%00",
        "/v1/charges?invoice=%00",
        "/v1/events?type=%00",
        "/v1/products?startingAfter=%00",
        "/v1/usage_records/dead_letters?subscriptionItem=%00",
        "/v1/products/%00",
        "/v1/prices/a%00b",
        "/v1/customers/%00",
        "/v1/subscriptions/%00",
        "/v1/invoices/%00",
        "/v1/events/%00",
        "/v1/events/%00/deliveries",
        "/v1/webhook_endpoints/%00",
        "/v1/payment_methods/%00",
        "/v1/test_helpers/test_clocks/%00",
    ],
)
async def test_hostile_query_and_path_parameters(client: httpx.AsyncClient, url: str) -> None:
    response = await client.get(url)
    assert response.status_code in (400, 404), response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "NUL" in error["message"]


async def test_hostile_query_parameter_is_named(client: httpx.AsyncClient) -> None:
    _refused(await client.get("/v1/invoices?customer=%00"), "customer")
    _refused(await client.get("/v1/products?startingAfter=x%00"), "startingAfter")


async def test_hostile_path_in_posts_and_deletes(client: httpx.AsyncClient) -> None:
    for response in (
        await client.post("/v1/customers/%00", json={"name": "Ada"}),
        await client.post("/v1/subscriptions/%00", json={}),
        await client.delete("/v1/subscriptions/%00"),
        await client.delete("/v1/webhook_endpoints/%00"),
        await client.post("/v1/invoices/%00/pay", json={}),
    ):
        _refused(response, "id")


@given(st.text(), st.text(), st.sampled_from(["\x00", "\ud800", "\udc00", "\udfff"]))
def test_text_refuses_any_string_with_a_bad_character(before: str, after: str, bad: str) -> None:
    value = before + bad + after
    assert text_problem(value) is not None
    with pytest.raises(ValidationError):
        TypeAdapter(Text).validate_python(value)
    with pytest.raises(ValidationError):
        TypeAdapter(Metadata).validate_python({"k": value})
    with pytest.raises(ValidationError):
        TypeAdapter(Metadata).validate_python({value: "v"})


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
def test_text_keeps_every_storable_string(value: str) -> None:
    assert text_problem(value) is None
    assert TypeAdapter(Text).validate_python(value) == value


@pytest.mark.parametrize(
    "path", ["/v1/prices", "/v1/billing/meters", "/v1/billing/alerts", "/v1/invoices"]
)
async def test_unknown_and_repeated_query_parameters_are_refused(
    client: httpx.AsyncClient, path: str
) -> None:
    unknown = _refused(await client.get(path, params={"limit": 1, "bogus": "1"}), "bogus")
    assert unknown["code"] == "parameter_unknown"
    assert "received unknown parameter: bogus" in unknown["message"]
    repeated = _refused(await client.get(f"{path}?limit=1&limit=2"), "limit")
    assert repeated["code"] == "parameter_invalid" and "more than once" in repeated["message"]
