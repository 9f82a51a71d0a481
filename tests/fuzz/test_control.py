"""Hostile raw bodies at every control-plane operation that takes one, driven by
hypothesis: random bytes (invalid UTF-8 among them), deep nesting, numbers past any
range or past what JSON can hold, hostile text and arbitrary JSON. Every answer is a
documented 4xx with the error body, or a 2xx for what turns out to be a valid body —
never a 5xx, and nothing stored for a refused body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from control.routing import MAX_JSON_DEPTH
from tests.support.api import PATH_KINDS
from tests.support.fuzz import FUZZ, Target, check_error, hostile_headers
from vinr.api import openapi_document

_DOCUMENT = openapi_document()
# Every operation with a body (its path ids filled with the seeded objects' by the test).
_WITH_BODY = sorted(
    (method.upper(), path)
    for path, operations in _DOCUMENT["paths"].items()
    for method, operation in operations.items()
    if "requestBody" in operation and not path.startswith("/v1/usage_records")
)

TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["\x00", "\ud800", "\udc00x", "\u202e", "x" * 600, "cust_" + "a" * 65]),
)
NUMBER = st.one_of(
    st.integers(min_value=-(2**100), max_value=2**100),
    st.floats(),
    st.sampled_from([2**63, 2**64, -(2**63) - 1, 10**12, 1e308]),
)
JSON = st.recursive(
    st.none() | st.booleans() | NUMBER | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def _deep(depth: int) -> bytes:
    return b'{"name": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.dictionaries(
        st.sampled_from(
            ["name", "metadata", "product", "currency", "tiers", "items", "url", "frozenTime"]
        ),
        JSON,
        max_size=4,
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.binary(min_size=1, max_size=30).map(lambda b: b'{"name": "' + b + b'"}'),
    st.integers(MAX_JSON_DEPTH - 2, 3000).map(_deep),
    st.integers(4200, 6000).map(lambda n: b'{"frozenTime": ' + b"7" * n + b"}"),
    st.sampled_from([b"NaN", b'{"frozenTime": Infinity}', b'{"name": "a"', b"", b"[]"]),
)


@pytest.fixture(scope="module")
def client(target: Target) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=target.url, timeout=30, headers={"Authorization": f"Bearer {target.key}"}
    ) as c:
        yield c


def _count(client: httpx.Client, path: str) -> int:
    response = client.get(path, params={"limit": 100})
    assert response.status_code == 200, response.text
    data: list[Any] = response.json()["data"]
    return len(data)


def test_hostile_control_bodies_get_documented_4xx(target: Target, client: httpx.Client) -> None:
    assert len(_WITH_BODY) >= 10, _WITH_BODY
    urls = []
    for method, path in _WITH_BODY:
        for name, kind in PATH_KINDS.items():
            path = path.replace("{" + name + "}", target.objects[kind])
        assert "{" not in path, path
        urls.append((method, path))
    lists = ["/v1/products", "/v1/prices", "/v1/webhook_endpoints"]
    before = {path: _count(client, path) for path in lists}
    refused = 0

    @settings(FUZZ, max_examples=400)
    @given(operation=st.sampled_from(urls), body=BODIES, headers=hostile_headers())
    def check(operation: tuple[str, str], body: bytes, headers: dict[str, bytes]) -> None:
        nonlocal refused
        method, path = operation
        response = client.request(method, path, content=body, headers=headers)
        if response.is_success:
            return  # hypothesis found a valid body (a product named "0", say)
        check_error(response, body)
        refused += 1

    check()
    assert refused > 300
    after = {path: _count(client, path) for path in lists}
    # a refused body stored nothing: what was created came from bodies answered 2xx
    assert after["/v1/prices"] == before["/v1/prices"]  # no generated body makes a price
    assert after["/v1/webhook_endpoints"] == before["/v1/webhook_endpoints"]


_LOOKUPS = sorted(
    path
    for path, operations in _DOCUMENT["paths"].items()
    if "get" in operations and path.count("{") == 1
)
_FILTERS = [
    ("/v1/invoices", "customer"),
    ("/v1/invoices", "status"),
    ("/v1/subscriptions", "customer"),
    ("/v1/charges", "invoice"),
    ("/v1/events", "type"),
    ("/v1/products", "startingAfter"),
    ("/v1/products", "limit"),
    ("/v1/usage_records/summaries", "subscriptionItem"),
    ("/v1/usage_records/dead_letters", "reason"),
    ("/v1/billing/meters", "status"),
    ("/v1/billing/alerts", "meter"),
]


def test_hostile_ids_and_query_parameters(client: httpx.Client) -> None:
    """Any bytes in an id of the URL or a query parameter (percent-encoded, so invalid
    UTF-8 too): a documented refusal or an answer, never a 5xx."""

    @settings(FUZZ, max_examples=300)
    @given(
        where=st.one_of(
            st.tuples(st.just("path"), st.sampled_from(_LOOKUPS)),
            st.tuples(st.just("query"), st.sampled_from(_FILTERS).map("?".join)),
        ),
        value=st.one_of(
            st.binary(max_size=60),
            st.sampled_from([b"\x00", b"\xff\xfe", b"\xed\xa0\x80", b"x" * 300, b"../.."]),
        ),
    )
    def check(where: tuple[str, str], value: bytes) -> None:
        kind, target = where
        if kind == "path":
            url = target.split("{")[0] + quote_from_bytes(value, safe="") + target.split("}")[1]
        else:
            path, name = target.split("?")
            url = f"{path}?{name}={quote_from_bytes(value, safe='')}"
        response = client.get(url)
        if not response.is_success:
            check_error(response, url)

    check()
