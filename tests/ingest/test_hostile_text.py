"""Hostile text in usage bodies (NUL characters, lone surrogates) is refused with a 400
naming the field and records nothing; a value Postgres refuses is a 400 too, never a 503
that would send clients retrying — and it holds off none of the requests that follow."""

from __future__ import annotations

import json

import asyncpg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from aggregator.worker import Aggregator
from infra.errors import InvalidRequest
from infra.settings import Settings
from ingest import parse
from ingest.parse import Request, parse_batch, parse_single
from tests.support.api import metered_price, subscribe
from tests.support.ingest import api_instance, error_of, ledger, total_usage


async def _item(client: httpx.AsyncClient) -> str:
    sub = await subscribe(client, (await metered_price(client))["id"])
    item: str = sub["items"]["data"][0]["id"]
    return item


def _assert_refused(response: httpx.Response, param: str) -> None:
    assert response.status_code == 400, response.text
    assert "retry-after" not in response.headers
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(
    "body",
    [
        {"subscriptionItem": "si_a\x00b", "quantity": 1},
        {"subscriptionItem": "\x00", "quantity": 1, "timestamp": 1, "action": "set"},
        {"subscriptionItem": "si_" + "\x00" * 200, "quantity": 0, "action": "increment"},
    ],
)
async def test_single_record_refuses_nul(
    client: httpx.AsyncClient, body: dict[str, object]
) -> None:
    _assert_refused(await client.post("/v1/usage_records", json=body), "subscriptionItem")


async def test_nul_item_then_good_record_is_accepted_at_once(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    item = await _item(client)
    for _ in range(3):
        refused = await client.post(
            "/v1/usage_records", json={"subscriptionItem": item + "\x00", "quantity": 5}
        )
        _assert_refused(refused, "subscriptionItem")
        assert "NUL" in error_of(refused)["message"]
    good = await client.post("/v1/usage_records", json={"subscriptionItem": item, "quantity": 2})
    assert good.status_code == 200, good.text
    await aggregator.drain()
    assert len(await ledger(pool, item)) == 1
    assert await total_usage(client, item) == 2


async def test_lone_surrogate_is_refused(client: httpx.AsyncClient) -> None:
    item = await _item(client)
    for url, raw in (
        ("/v1/usage_records", b'{"subscriptionItem": "si_\\ud800", "quantity": 1}'),
        (
            "/v1/usage_records/batch",
            b'{"subscriptionItem": "si_\\udc00", "records": [{"quantity": 1}]}',
        ),
        (
            "/v1/usage_records/batch",
            json.dumps(
                {"subscriptionItem": item, "records": [{"quantity": 1, "idempotencyKey": "K"}]}
            )
            .replace('"K"', '"\\ud800"')
            .encode(),
        ),
    ):
        response = await client.post(url, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, response.text
        assert error_of(response)["type"] == "invalid_request_error"
    good = await client.post("/v1/usage_records", json={"subscriptionItem": item, "quantity": 1})
    assert good.status_code == 200, good.text


async def test_batch_refuses_nul_and_records_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    item = await _item(client)
    url = "/v1/usage_records/batch"
    refused = await client.post(
        url, json={"subscriptionItem": item + "\x00", "records": [{"quantity": 1}]}
    )
    _assert_refused(refused, "subscriptionItem")
    keyed = {
        "subscriptionItem": item,
        "records": [
            {"quantity": 1, "idempotencyKey": "ok"},
            {"quantity": 1, "idempotencyKey": "a\x00"},
        ],
    }
    _assert_refused(await client.post(url, json=keyed), "records[1].idempotencyKey")
    good = await client.post(url, json={"subscriptionItem": item, "records": [{"quantity": 3}]})
    assert good.status_code == 200, good.text
    await aggregator.drain()
    assert len(await ledger(pool, item)) == 1
    assert await total_usage(client, item) == 3


def _lenient(body: bytes) -> Request:
    """The single-record parser without its NUL check: what reaches the item lookup if the
    first line of defence ever misses a character."""
    d = json.loads(body)
    return Request(False, d["subscriptionItem"], [d["quantity"]], [None], [False], [None])


async def test_postgres_data_error_is_a_400_not_a_503(
    client: httpx.AsyncClient, settings: Settings, secret_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = await _item(client)
    monkeypatch.setattr("ingest.usage.parse_single", _lenient)  # bound by the endpoint made next
    async with (
        api_instance(settings) as lenient,
        httpx.AsyncClient(
            base_url=lenient.url, timeout=30, headers={"Authorization": f"Bearer {secret_key}"}
        ) as c,
    ):
        for _ in range(3):
            refused = await c.post(
                "/v1/usage_records", json={"subscriptionItem": "si_x\x00y", "quantity": 1}
            )
            assert refused.status_code == 400, refused.text
            assert "retry-after" not in refused.headers
            assert error_of(refused)["code"] == "invalid_value"
        good = await c.post("/v1/usage_records", json={"subscriptionItem": item, "quantity": 1})
        assert good.status_code == 200, good.text


@given(st.text(max_size=100), st.text(max_size=100))
def test_parse_refuses_nul_anywhere(before: str, after: str) -> None:
    item = before + "\x00" + after
    single = json.dumps({"subscriptionItem": item, "quantity": 1}).encode()
    with pytest.raises((InvalidRequest, ValidationError)):
        parse_single(single)
    batch = json.dumps({"subscriptionItem": item, "records": [{"quantity": 1}]}).encode()
    with pytest.raises((InvalidRequest, ValidationError)):
        parse_batch(batch)
    keyed = json.dumps(
        {"subscriptionItem": "si_1", "records": [{"quantity": 1, "idempotencyKey": item}]}
    )
    with pytest.raises((InvalidRequest, ValidationError)):
        parse_batch(keyed.encode())


@given(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        min_size=1,
        max_size=255,
    )
)
def test_parse_keeps_every_storable_item(item: str) -> None:
    body = json.dumps({"subscriptionItem": item, "quantity": 1}).encode()
    assert parse_single(body).item == item
    assert (
        parse.parse_batch(
            json.dumps({"subscriptionItem": item, "records": [{"quantity": 1}]}).encode()
        ).item
        == item
    )
