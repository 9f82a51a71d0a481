"""Hostile bodies and headers at the two usage endpoints, driven by hypothesis: arbitrary
JSON values, wrong types, huge, negative and fractional numbers, NUL characters, lone
surrogates and other hostile text, random bytes (invalid UTF-8 among them), deep nesting
and oversized bodies. Every answer is a documented 4xx with the error body, never a 5xx —
and never a 503 or 429 that would tell the client to retry: nothing a client sends can
fail a publish and so hold off the good requests that follow (``_kafka_down_until`` in
``ingest.usage`` is set only by a failed publish). A good request is accepted right after.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from domain.idempotency import MAX_KEY_LENGTH
from domain.wire import encode_entries, usage_entry
from ingest.models import MAX_BATCH, MAX_QUANTITY, MAX_TIMESTAMP, UsageRecord, UsageRecordBatch
from ingest.publisher import UsagePublisher
from tests.support.fuzz import FUZZ, LATIN1, Target, check_error, hostile_headers

FROZEN = 1_750_000_000  # the fuzzed item's test clock: its period starts here
SINGLE, BATCH = "/v1/usage_records", "/v1/usage_records/batch"
# The smallest message size limit a broker may have (librdkafka's default
# message.max.bytes; Kafka's own is 1 MiB): no accepted request may produce a larger one.
BROKER_MESSAGE_LIMIT = 1_000_000


@pytest.fixture(scope="module")
def item(target: Target) -> Iterator[tuple[httpx.Client, str]]:
    """A metered item of its own, on a test clock (so its period and "now" hold still)."""
    with httpx.Client(
        base_url=target.url, timeout=30, headers={"Authorization": f"Bearer {target.key}"}
    ) as client:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(path, json=body)
            assert response.status_code == 200, response.text
            out: dict[str, Any] = response.json()
            return out

        product = post("/v1/products", {"name": "hostile usage"})
        price = post(
            "/v1/prices",
            {
                "product": product["id"],
                "currency": "eur",
                "billingScheme": "usage",
                "unitAmount": 1,
                "recurring": {"interval": "month", "usageType": "metered"},
            },
        )
        customer = post("/v1/customers", {"name": "hostile"})
        clock = post("/v1/test_helpers/test_clocks", {"frozenTime": FROZEN})
        sub = post(
            "/v1/subscriptions",
            {
                "customer": customer["id"],
                "items": [{"price": price["id"]}],
                "testClock": clock["id"],
            },
        )
        yield client, sub["items"]["data"][0]["id"]


def _accepted(client: httpx.Client, item: str) -> None:
    good = client.post(SINGLE, json={"subscriptionItem": item, "quantity": 1})
    assert good.status_code == 200, good.text
    UsageRecord.model_validate_json(good.content)
    batch = client.post(BATCH, json={"subscriptionItem": item, "records": [{"quantity": 2}]})
    assert batch.status_code == 200, batch.text
    UsageRecordBatch.model_validate_json(batch.content)


# --- what a hostile client sends ------------------------------------------------------

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(min_size=256, max_size=1200),
    st.sampled_from(
        [
            "",
            "si_unknown",  # well-formed, but no such item
            "\x00",
            "si_\x00",
            "\ud800",  # a lone surrogate: json.dumps writes it as the escape "\ud800"
            "si_\udfff",
            "\u202esi_",
            "\ufeff",
            "%00",
            "' OR 1=1 --",
            "si_" + "x" * 253,
            "\r\n\t",
            "\U0001f4a9" * 100,
        ]
    ),
)
HOSTILE_NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=-1),
    st.integers(min_value=MAX_QUANTITY + 1, max_value=2**1000),
    st.floats(),  # NaN and Infinity included: json.dumps writes them, they are not JSON
    st.sampled_from([0.5, 1.0, -0.0, 1e308, 2**53 + 0.5, MAX_TIMESTAMP + 1]),
)
LEAF = st.one_of(st.none(), st.booleans(), st.integers(), HOSTILE_NUMBER, HOSTILE_TEXT)
ANY_JSON = st.recursive(
    LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=10,
)
FIELD_VALUE = st.one_of(HOSTILE_NUMBER, HOSTILE_TEXT, ANY_JSON)


def _dumps(value: Any) -> bytes:
    """The stdlib encoder: integers of any size, NaN and Infinity, lone surrogates as
    escapes — everything a careless or hostile client's encoder writes."""
    return json.dumps(value).encode()


def _deep(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@st.composite
def single_record(draw: st.DrawFn, item: str) -> bytes:
    body: dict[str, Any] = {"subscriptionItem": item, "quantity": 1}
    for field in draw(
        st.lists(  # a list, not a set: set order would differ between runs
            st.sampled_from(["subscriptionItem", "quantity", "timestamp", "action", "?"]),
            unique=True,
        )
    ):
        body[field if field != "?" else draw(HOSTILE_TEXT)] = draw(FIELD_VALUE)
    return _dumps(body)


@st.composite
def batch(draw: st.DrawFn, item: str) -> bytes:
    records: list[Any] = [{"quantity": 1} for _ in range(draw(st.integers(1, 8)))]
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(records) - 1))
        field = draw(st.sampled_from(["quantity", "timestamp", "action", "idempotencyKey", "?"]))
        if field == "?":
            records[at] = draw(ANY_JSON)
        elif isinstance(records[at], dict):
            records[at][field] = draw(FIELD_VALUE)
    body: dict[str, Any] = {"subscriptionItem": draw(st.just(item) | HOSTILE_TEXT)}
    body["records"] = draw(
        st.just(records)
        | st.just([])
        | st.just([{"quantity": 1}] * (MAX_BATCH + 1))
        | ANY_JSON.filter(lambda v: not isinstance(v, list))
    )
    return _dumps(body)


def raw_bodies(item: str, limit: int) -> st.SearchStrategy[bytes]:
    valid = _dumps({"subscriptionItem": item, "quantity": 1})
    return st.one_of(
        st.binary(max_size=300),  # invalid UTF-8 among it
        st.binary(max_size=40).map(lambda b: b'{"subscriptionItem": "' + b + b'", "quantity": 1}'),
        st.integers(1, 5000).map(_deep),
        st.integers(1, 5000).map(lambda n: b'{"subscriptionItem": ' + _deep(n, b'"x"') + b"}"),
        st.integers(1, 3000).map(
            lambda n: b'{"subscriptionItem": "si", "quantity": ' + _deep(n) + b"}"
        ),
        st.integers(4000, 6000).map(
            lambda n: b'{"subscriptionItem": "si", "quantity": ' + b"9" * n + b"}"
        ),
        st.sampled_from([limit + 1, 2 * limit]).map(lambda n: valid + b" " * n),
        ANY_JSON.map(_dumps),
        st.sampled_from([b"", b"null", b"[]", b"{}", b"NaN", b'"x"', valid[:-1]]),
    )


def test_hostile_usage_requests_get_documented_4xx(
    target: Target, item: tuple[httpx.Client, str]
) -> None:
    client, item_id = item
    _accepted(client, item_id)
    limit = target.api.settings.max_body_bytes
    seen: set[int] = set()

    @settings(FUZZ, max_examples=1000)
    @example(request=(SINGLE, _dumps({"subscriptionItem": "si_unknown", "quantity": 1})), extra={})
    @example(request=(BATCH, b" " * (limit + 1)), extra={})
    @given(
        request=st.one_of(
            st.tuples(st.just(SINGLE), single_record(item_id)),
            st.tuples(st.just(BATCH), batch(item_id)),
            st.tuples(st.sampled_from([SINGLE, BATCH]), raw_bodies(item_id, limit)),
        ),
        extra=hostile_headers(),
    )
    def check(request: tuple[str, bytes], extra: dict[str, bytes]) -> None:
        path, body = request
        response = client.post(path, content=body, headers=extra)
        seen.add(response.status_code)
        if response.status_code == 200:  # a hostile-looking body that is a valid one
            model = UsageRecord if path == SINGLE else UsageRecordBatch
            model.model_validate_json(response.content)
            return
        error = check_error(response, body)
        assert response.status_code not in (429, 503), (body[:300], response.text)
        if response.status_code == 413:
            assert len(body) > limit
        if error.error.code == "json_invalid":
            assert "JSON" in error.error.message

    check()
    assert {400, 404, 413} <= seen, seen  # every kind of refusal was checked
    _accepted(client, item_id)


def test_hostile_credentials_get_a_401(target: Target) -> None:
    with httpx.Client(base_url=target.url, timeout=30) as anonymous:

        @settings(FUZZ, max_examples=150)
        @given(
            authorization=st.one_of(
                st.text(LATIN1, max_size=300),
                st.text(LATIN1, max_size=80).map(lambda k: "Bearer sk_test_" + k),
                st.text(LATIN1, max_size=80).map(lambda k: "Bearer rk_live_" + k),
            ).filter(lambda a: a.strip() == a),
            path=st.sampled_from([SINGLE, BATCH, "/v1/products"]),
        )
        def check(authorization: str, path: str) -> None:
            headers = {"Authorization": authorization.encode("latin-1")} if authorization else {}
            response = anonymous.post(
                path, json={"subscriptionItem": "si_x", "quantity": 1}, headers=headers
            )
            assert response.status_code == 401, (authorization, response.text)
            check_error(response, authorization)

        check()


def _largest_batch(item: str) -> dict[str, Any]:
    """The largest body the batch endpoint accepts in this period: every record with the
    largest quantity and its own 255-character key."""
    return {
        "subscriptionItem": item,
        "records": [
            {
                "quantity": MAX_QUANTITY,
                "timestamp": FROZEN + i % 300,
                "action": "set" if i % 2 else "increment",
                "idempotencyKey": f"{i:05d}" + "k" * (MAX_KEY_LENGTH - 5),
            }
            for i in range(MAX_BATCH)
        ],
    }


def test_no_request_holds_off_the_next(target: Target, item: tuple[httpx.Client, str]) -> None:
    """Hostile requests of every kind, the largest accepted batch among them, and then a
    good request at once: it is accepted. A publish failure would answer the requests of the
    next second 503 — none is answered 503, and the good one goes through."""
    client, item_id = item
    largest = client.post(BATCH, json=_largest_batch(item_id))
    assert largest.status_code == 200, largest.text
    assert largest.json()["count"] == MAX_BATCH
    limit = target.api.settings.max_body_bytes
    hostile: list[tuple[str, bytes]] = [
        (SINGLE, b'{"subscriptionItem": "si_\x00", "quantity": 1}'),
        (SINGLE, _dumps({"subscriptionItem": item_id + "\x00", "quantity": 1})),
        (SINGLE, _dumps({"subscriptionItem": "\ud800", "quantity": 1})),
        (SINGLE, _dumps({"subscriptionItem": item_id, "quantity": 2**64})),
        (SINGLE, _dumps({"subscriptionItem": item_id, "quantity": 1, "timestamp": 2**62})),
        (SINGLE, _dumps({"subscriptionItem": item_id, "quantity": math.inf})),
        (SINGLE, b'{"subscriptionItem": "\xff\xfe", "quantity": 1}'),
        (SINGLE, b'{"subscriptionItem": "si", "quantity": ' + b"9" * 5000 + b"}"),
        (SINGLE, _deep(100_000)),
        (BATCH, _deep(100_000)),
        (BATCH, _dumps({"subscriptionItem": item_id, "records": [{"quantity": -1}] * 1001})),
        (BATCH, _dumps(_largest_batch(item_id)) + b" " * limit),
        (BATCH, _dumps({"subscriptionItem": "x" * 10_000, "records": [{"quantity": 1}]})),
    ]
    for path, body in hostile:
        check_error(client.post(path, content=body, headers={"content-type": "application/json"}))
    good = client.post(SINGLE, json={"subscriptionItem": item_id, "quantity": 3})
    assert good.status_code == 200, good.text


def test_the_largest_message_a_request_makes_fits_any_broker() -> None:
    """What a client controls cannot make a message the broker refuses: the largest batch
    (every record distinct, every number at its bound) and the largest group of single
    records the publisher puts into one message are far below a broker's limit."""
    records = [(MAX_TIMESTAMP - i, MAX_QUANTITY, i % 2 == 0) for i in range(MAX_BATCH)]
    long_id = "mbu_" + "x" * 40
    entry, batched = usage_entry(
        long_id, "acct_" + "x" * 40, True, 2**62, MAX_TIMESTAMP, MAX_TIMESTAMP, 2**40, records
    )
    largest_batch = encode_entries([entry], [batched])
    single, _ = usage_entry(
        long_id, "acct_" + "x" * 40, True, 2**62, MAX_TIMESTAMP, MAX_TIMESTAMP, 2**40, records[:1]
    )
    most = inspect.signature(UsagePublisher).parameters["max_batch"].default
    singles = encode_entries([single] * most, [None] * most)
    assert len(largest_batch) < BROKER_MESSAGE_LIMIT / 4, len(largest_batch)
    assert len(singles) < BROKER_MESSAGE_LIMIT / 4, len(singles)
