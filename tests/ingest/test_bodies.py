"""Property: every malformed, oversized or out-of-range usage body gets a 4xx with a useful
error and publishes nothing — never a 500.

Hypothesis drives synchronous requests, so the API under test runs on its own event loop
in a thread (``ThreadedApi``, with its own Kafka topic, to check that nothing reached it).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.accounts import create_account
from infra.db import create_pool
from infra.settings import Settings
from tests.support.server import ThreadedApi

MAX_BODY = 4096


async def _published(settings: Settings) -> int:
    """Messages on the instance's own topic (partitions 0-3: the dev broker's default)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(
            [TopicPartition(settings.usage_topic, p) for p in range(4)]
        )
        return sum(ends.values())
    finally:
        await consumer.stop()


async def _fixture(settings: Settings, url: str) -> tuple[str, str]:
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            _, key, _ = await create_account(conn, "bodies")
    finally:
        await pool.close()
    async with httpx.AsyncClient(
        base_url=url, timeout=10, headers={"Authorization": f"Bearer {key}"}
    ) as c:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            r = await c.post(path, json=body)
            assert r.status_code == 200, r.text
            out: dict[str, Any] = r.json()
            return out

        product = await post("/v1/products", {"name": "bodies"})
        price = await post(
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "EUR",
                "billingScheme": "usage",
                "unitAmountDecimal": "1",
                "recurring": {"interval": "month", "usageType": "metered"},
            },
        )
        customer = await post("/v1/customers", {"name": "b"})
        sub = await post(
            "/v1/subscriptions", {"customer": customer["id"], "items": [{"price": price["id"]}]}
        )
    return key, sub["items"]["data"][0]["id"]


@pytest.fixture(scope="module")
def target(settings: Settings) -> Iterator[tuple[httpx.Client, str, ThreadedApi]]:
    own = Settings(
        **(
            settings.model_dump()
            | {
                "usage_topic": f"{settings.usage_topic}.bodies.{uuid.uuid4().hex[:6]}",
                "max_body_bytes": MAX_BODY,
            }
        )
    )
    api = ThreadedApi(own)
    with api as url:
        key, item = api.run(_fixture(own, url))
        with httpx.Client(
            base_url=url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            yield client, item, api


# --- bodies that must be refused -------------------------------------------------------

NOT_INT = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
BAD_QUANTITY = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=2**53 + 1),
    NOT_INT.filter(lambda v: v is not None),
)
BAD_TIMESTAMP = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=2**40 + 1),
    st.integers(0, 1_700_000_000),  # long before the period
    st.integers(301, 10**7).map(lambda d: int(time.time()) + d),  # too far ahead
    NOT_INT.filter(lambda v: v is not None),
)
BAD_ACTION = st.one_of(
    st.text(max_size=12).filter(lambda a: a not in ("increment", "set")),
    st.integers(),
    st.none(),
    st.booleans(),
)
BAD_ITEM = st.one_of(
    st.just(""),
    st.text(min_size=256, max_size=300),
    st.text(min_size=1, max_size=30).map(lambda s: "si_nope" + s),
    st.integers(),
    st.none(),
    st.lists(st.text(max_size=3), max_size=2),
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _dumps(value: Any) -> bytes:
    """The stdlib encoder: it writes integers of any size (and Infinity, which is not JSON
    — one more malformed body)."""
    return json.dumps(value).encode()


@st.composite
def single_bodies(draw: st.DrawFn, item: str) -> bytes:
    body: dict[str, Any] = {"subscriptionItem": item, "quantity": 1}
    flaw = draw(st.sampled_from(["quantity", "timestamp", "action", "item", "extra", "missing"]))
    if flaw == "quantity":
        body["quantity"] = draw(BAD_QUANTITY)
    elif flaw == "timestamp":
        body["timestamp"] = draw(BAD_TIMESTAMP)
    elif flaw == "action":
        body["action"] = draw(BAD_ACTION)
    elif flaw == "item":
        body["subscriptionItem"] = draw(BAD_ITEM)
    elif flaw == "extra":
        body[
            draw(
                st.text(min_size=1, max_size=10).filter(
                    lambda k: k not in ("subscriptionItem", "quantity", "timestamp", "action")
                )
            )
        ] = 1
    else:
        del body[draw(st.sampled_from(["subscriptionItem", "quantity"]))]
    return _dumps(body)


@st.composite
def batch_bodies(draw: st.DrawFn, item: str) -> bytes:
    records: Any = [{"quantity": 1} for _ in range(draw(st.integers(1, 20)))]
    flaw = draw(st.sampled_from(["record", "empty", "not_a_list", "too_many", "key"]))
    if flaw == "record":
        at = draw(st.integers(0, len(records) - 1))
        field = draw(st.sampled_from(["quantity", "timestamp", "action", "idempotencyKey"]))
        records[at][field] = draw(
            {
                "quantity": BAD_QUANTITY,
                "timestamp": BAD_TIMESTAMP,
                "action": BAD_ACTION,
                "idempotencyKey": st.sampled_from(["", "k" * 256]),
            }[field]
        )
    elif flaw == "empty":
        records = []
    elif flaw == "not_a_list":
        records = draw(JSON.filter(lambda v: not isinstance(v, list)))
    elif flaw == "too_many":
        records = [{}] * 1001
    else:
        records = [{"quantity": 1, "idempotencyKey": "same"}] * 2
    return _dumps({"subscriptionItem": item, "records": records})


def bodies(item: str) -> st.SearchStrategy[tuple[str, bytes]]:
    raw = st.one_of(
        st.binary(max_size=200),
        JSON.map(_dumps),
        st.binary(min_size=MAX_BODY + 1, max_size=MAX_BODY * 3),  # oversized
    )
    return st.one_of(
        st.tuples(st.sampled_from(["/v1/usage_records", "/v1/usage_records/batch"]), raw),
        st.tuples(st.just("/v1/usage_records"), single_bodies(item)),
        st.tuples(st.just("/v1/usage_records/batch"), batch_bodies(item)),
    )


def test_bad_bodies_get_a_useful_4xx_and_publish_nothing(
    target: tuple[httpx.Client, str, ThreadedApi],
) -> None:
    client, item, api = target
    ok = client.post("/v1/usage_records", json={"subscriptionItem": item, "quantity": 1})
    assert ok.status_code == 200, ok.text  # the instance does publish good bodies
    before = api.run(_published(api.settings))
    assert before == 1

    @settings(
        max_examples=200,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=bodies(item), keyed=st.booleans())
    def check(case: tuple[str, bytes], keyed: bool) -> None:
        path, body = case
        headers = {"Content-Type": "application/json"}
        if keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        response = client.post(path, content=body, headers=headers)
        assert 400 <= response.status_code < 500, (body[:300], response.text)
        error = response.json()["error"]
        assert error["type"] in ("invalid_request_error", "idempotency_error")
        assert isinstance(error["message"], str) and len(error["message"]) > 10
        if response.status_code == 413:
            assert len(body) > MAX_BODY

    check()
    assert api.run(_published(api.settings)) == before
