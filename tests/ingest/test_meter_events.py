"""Meter events on the hot path, against a live API on real Postgres, Redis and the dev
broker: what an accepted event puts on the topic (key, content, exact decimals), what is
refused and how (every bad event of a batch named, nothing published), dedupe by
identifier and by Idempotency-Key, the customer's "now" under a test clock, closing
boundaries reaching the cache through the meter epoch, restricted keys, rate limits and
Kafka away (503, nothing left claimed).

Meters are stored directly (the ingest reads them; making them is the control plane's).
The API under test publishes to a topic of its own, read back from its beginning.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from domain.accounts import create_account, create_key
from domain.meters import MAX_AGE_S, MAX_BATCH_EVENTS
from domain.wire import MeterEvent, encode_meter_events, meter_key
from infra.settings import METER_CACHE_STALE_S, Settings
from ingest.meter_models import MAX_IDENTIFIER, parse_event_single, parse_events_batch
from tests.support.api import eventually, metered_price, post, subscribe
from tests.support.billing import T0
from tests.support.ingest import (
    PausableBroker,
    TcpProxy,
    api_instance,
    error_of,
    meter_messages,
    proxied_url,
)
from tests.support.limits import key_client, limited_account, until_refused

SINGLE, BATCH = "/v1/billing/meter_events", "/v1/billing/meter_events/batch"


@dataclass
class Api:
    url: str
    topic: str
    bootstrap: str


@pytest.fixture(scope="module")
async def meter_api(settings: Settings) -> AsyncIterator[Api]:
    topic = f"{settings.usage_topic}.meters.{uuid.uuid4().hex[:6]}"
    async with api_instance(settings, usage_topic=topic) as server:
        yield Api(server.url, topic, settings.kafka_bootstrap or "")


@dataclass
class Tenant:
    account: str
    key: str
    client: httpx.AsyncClient


@pytest.fixture
async def tenant(meter_api: Api, pool: asyncpg.Pool) -> AsyncIterator[Tenant]:
    async with pool.acquire() as conn:
        account, key, _ = await create_account(conn, f"meters-{uuid.uuid4().hex[:6]}")
    async with key_client(meter_api.url, key) as c:
        yield Tenant(account, key, c)


async def _meter(
    pool: asyncpg.Pool,
    account: str,
    event_name: str,
    formula: str = "sum",
    *,
    status: str = "active",
    customer_key: str = "customer",
    value_key: str = "value",
) -> int:
    pk: int = await pool.fetchval(
        "INSERT INTO meters (id, account_id, livemode, display_name, event_name, formula,"
        " customer_key, value_key, status, created, updated)"
        " VALUES ($1, $2, false, 'm', $3, $4, $5, $6, $7, 0, 0) RETURNING pk",
        f"mtr_{uuid.uuid4().hex[:16]}",
        account,
        event_name,
        formula,
        customer_key,
        value_key,
        status,
    )
    return pk


async def _customer(c: httpx.AsyncClient) -> tuple[str, int]:
    created = await post(c, "/v1/customers", {"name": "Ada"})
    return created["id"], 0


async def _customer_pk(pool: asyncpg.Pool, customer: str) -> int:
    pk: int = await pool.fetchval("SELECT pk FROM customers WHERE id = $1", customer)
    return pk


def _name() -> str:
    return f"api_calls_{uuid.uuid4().hex[:8]}"


async def _mine(api: Api, account: str) -> list[tuple[bytes | None, list[Any]]]:
    """This account's meter messages on the API's topic, in topic order per partition."""
    return [
        (key, events)
        for key, events in await meter_messages(api.bootstrap, api.topic)
        if events[0][1] == account
    ]


async def test_an_accepted_event_lands_on_the_topic_with_its_key_and_exact_value(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    meter_pk = await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    customer_pk = await _customer_pk(pool, customer)
    now = int(time.time())
    body = {
        "eventName": name,
        "payload": {"customer": customer, "value": "12.500000000001", "region": "eu"},
        "identifier": "evt-1",
        "timestamp": now - 60,
    }
    answer = await tenant.client.post(SINGLE, json=body)
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert "Idempotent-Replayed" not in answer.headers
    assert got == {
        "object": "billing.meter_event",
        "eventName": name,
        "identifier": "evt-1",
        "payload": body["payload"],
        "timestamp": now - 60,
        "created": got["created"],
        "livemode": False,
    }
    assert abs(got["created"] - now) <= 5
    (key, events), *rest = await _mine(meter_api, tenant.account)
    assert rest == []
    assert key == meter_key(meter_pk, customer_pk)
    [[identifier, account, livemode, m_pk, c_pk, ts, value, accepted_at]] = events
    assert (identifier, account, livemode, m_pk, c_pk, ts) == (
        "evt-1",
        tenant.account,
        False,
        meter_pk,
        customer_pk,
        now - 60,
    )
    assert Decimal(value) == Decimal("12.500000000001") and value == "12.500000000001"
    assert accepted_at == got["created"]
    # An integral value travels as an integer, a default timestamp is now.
    second = await tenant.client.post(
        SINGLE, json={"eventName": name, "payload": {"customer": customer, "value": 7}}
    )
    assert second.status_code == 200, second.text
    assert second.json()["identifier"].startswith("mevt_")
    assert abs(second.json()["timestamp"] - int(time.time())) <= 5
    *_, (_, [last]) = await _mine(meter_api, tenant.account)
    assert last[0] == second.json()["identifier"] and last[6] == 7
    assert last[5] == second.json()["timestamp"]


async def test_a_count_meter_needs_no_value_and_a_sum_meter_does(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    counted, summed = _name(), _name()
    await _meter(pool, tenant.account, counted, "count")
    await _meter(pool, tenant.account, summed, "sum")
    customer, _ = await _customer(tenant.client)
    ok = await tenant.client.post(
        SINGLE, json={"eventName": counted, "payload": {"customer": customer}}
    )
    assert ok.status_code == 200, ok.text
    refused = await tenant.client.post(
        SINGLE, json={"eventName": summed, "payload": {"customer": customer}}
    )
    assert refused.status_code == 400
    error = error_of(refused)
    assert (error["param"], error["code"]) == ("payload.value", "parameter_missing")
    [(_, [event])] = await _mine(meter_api, tenant.account)
    assert event[0] == ok.json()["identifier"] and event[6] == 1


async def test_custom_payload_keys_name_the_customer_and_the_value(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name, "max", customer_key="account", value_key="tokens")
    customer, _ = await _customer(tenant.client)
    ok = await tenant.client.post(
        SINGLE, json={"eventName": name, "payload": {"account": customer, "tokens": "0.5"}}
    )
    assert ok.status_code == 200, ok.text
    missing = await tenant.client.post(
        SINGLE, json={"eventName": name, "payload": {"customer": customer, "value": 1}}
    )
    assert error_of(missing)["param"] == "payload.account"
    [(_, [event])] = await _mine(meter_api, tenant.account)
    assert event[6] == "0.5"


async def test_a_batch_is_grouped_per_meter_and_customer_in_order(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    meter_pk = await _meter(pool, tenant.account, name)
    a, _ = await _customer(tenant.client)
    b, _ = await _customer(tenant.client)
    now = int(time.time())
    customers = [a, b, a, a, b]
    events = [
        {
            "eventName": name,
            "payload": {"customer": c, "value": str(i + 1)},
            "identifier": f"b-{i}",
            "timestamp": now - 10 + i,
        }
        for i, c in enumerate(customers)
    ]
    answer = await tenant.client.post(BATCH, json={"events": events})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert (got["object"], got["count"], got["duplicates"]) == ("billing.meter_event_batch", 5, 0)
    assert [e["identifier"] for e in got["data"]] == [f"b-{i}" for i in range(5)]
    messages = await _mine(meter_api, tenant.account)
    by_key = {key: [e[0] for e in evs] for key, evs in messages}
    assert len(messages) == 2
    a_pk, b_pk = await _customer_pk(pool, a), await _customer_pk(pool, b)
    assert by_key == {
        meter_key(meter_pk, a_pk): ["b-0", "b-2", "b-3"],
        meter_key(meter_pk, b_pk): ["b-1", "b-4"],
    }


async def test_a_batch_is_refused_whole_naming_every_bad_event(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    now = int(time.time())
    good = {"eventName": name, "payload": {"customer": customer, "value": 1}, "timestamp": now}
    shapes = [
        good,
        {**good, "timestamp": True},  # a bool is no integer
        good,
        {**good, "payload": {"customer": customer, "value": 1.5}},  # a float value
        {**good, "eventName": "x" * 101},
        {**good, "payload": {str(k): "v" for k in range(17)}},
    ]
    refused = await tenant.client.post(BATCH, json={"events": shapes})
    assert refused.status_code == 400
    message = error_of(refused)["message"]
    for param in (
        "events[1].timestamp",
        "events[3].payload.value",
        "events[4].eventName",
        "events[5].payload",
    ):
        assert param in message, message
    assert "events[0]" not in message and "events[2]" not in message
    # Well-formed events the rules refuse: all named at once too.
    rules = [
        good,
        {**good, "eventName": "no_such_meter"},
        {**good, "payload": {"customer": "cust_nobody", "value": 1}},
        {**good, "timestamp": now + 3600},
        {**good, "payload": {"customer": customer, "value": "-1"}},
        good,
    ]
    refused = await tenant.client.post(BATCH, json={"events": rules})
    assert refused.status_code == 400
    message = error_of(refused)["message"]
    assert message.startswith("4 invalid parameters, nothing was recorded"), message
    for param in (
        "events[1].eventName",
        "events[2].payload.customer",
        "events[3].timestamp",
        "events[4].payload.value",
    ):
        assert param in message, message
    too_many = await tenant.client.post(BATCH, json={"events": [good] * 1001})
    assert too_many.status_code == 400
    assert "events" in error_of(too_many)["message"]
    repeated = await tenant.client.post(
        BATCH,
        json={"events": [{**good, "identifier": "same"}, {**good, "identifier": "same"}]},
    )
    assert error_of(repeated)["param"] == "events[1].identifier"
    assert await _mine(meter_api, tenant.account) == []


async def test_a_repeated_identifier_is_answered_and_not_published_again(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    event = {"eventName": name, "payload": {"customer": customer, "value": "2.5"}}
    first = await tenant.client.post(SINGLE, json={**event, "identifier": "once"})
    assert first.status_code == 200, first.text
    await asyncio.sleep(1.1)  # a replay answers the first acceptance's times, not its own
    again = await tenant.client.post(SINGLE, json={**event, "identifier": "once"})
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    batch = await tenant.client.post(
        BATCH,
        json={"events": [{**event, "identifier": "once"}, {**event, "identifier": "twice"}]},
    )
    assert batch.status_code == 200, batch.text
    got = batch.json()
    assert (got["count"], got["duplicates"]) == (2, 1)
    assert got["data"][0] == first.json()
    other = await tenant.client.post(
        SINGLE,
        json={**event, "payload": {"customer": customer, "value": "3"}, "identifier": "once"},
    )
    assert other.status_code == 400
    error = error_of(other)
    assert (error["type"], error["param"]) == ("idempotency_error", "identifier")
    in_batch = await tenant.client.post(
        BATCH,
        json={
            "events": [
                {**event, "identifier": "new"},
                {**event, "timestamp": 1, "identifier": "twice"},
            ]
        },
    )
    assert in_batch.status_code == 400
    assert error_of(in_batch)["param"] == "events[1].identifier"
    published = [e[0] for _, evs in await _mine(meter_api, tenant.account) for e in evs]
    assert published == ["once", "twice"]


async def test_an_idempotency_key_replays_a_batch_with_the_same_identifiers(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    body = {
        "events": [
            {"eventName": name, "payload": {"customer": customer, "value": i}} for i in range(3)
        ]
    }
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex[:6]}"}
    first = await tenant.client.post(BATCH, json=body, headers=headers)
    assert first.status_code == 200, first.text
    again = await tenant.client.post(BATCH, json=body, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    changed = await tenant.client.post(BATCH, json={"events": body["events"][:2]}, headers=headers)
    assert changed.status_code == 400 and error_of(changed)["type"] == "idempotency_error"
    published = [e[0] for _, evs in await _mine(meter_api, tenant.account) for e in evs]
    assert published == [e["identifier"] for e in first.json()["data"]]


async def test_an_idempotency_key_replays_a_batch_that_repeated_an_identifier(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """The key of a batch holding an identifier accepted before keeps how that event was
    answered: its replay is the first answer, the repeated event still not published."""
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    seen = f"seen-{uuid.uuid4().hex[:6]}"
    event = {"eventName": name, "payload": {"customer": customer, "value": 1}}
    alone = await tenant.client.post(SINGLE, json={**event, "identifier": seen})
    assert alone.status_code == 200, alone.text
    body = {"events": [{**event, "identifier": seen}, {**event, "identifier": seen + "-new"}]}
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex[:6]}"}
    first = await tenant.client.post(BATCH, json=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json()["duplicates"] == 1
    again = await tenant.client.post(BATCH, json=body, headers=headers)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    published = [e[0] for _, evs in await _mine(meter_api, tenant.account) for e in evs]
    assert sorted(published) == [seen, seen + "-new"]


async def test_unknown_and_inactive_event_names_are_refused(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    inactive = _name()
    await _meter(pool, tenant.account, inactive, status="inactive")
    customer, _ = await _customer(tenant.client)
    for name in (inactive, "never_made"):
        refused = await tenant.client.post(
            SINGLE, json={"eventName": name, "payload": {"customer": customer, "value": 1}}
        )
        assert refused.status_code == 400
        error = error_of(refused)
        assert (error["param"], error["code"]) == ("eventName", "meter_not_found")
        assert name in error["message"]
    assert await _mine(meter_api, tenant.account) == []


async def test_a_customer_of_another_account_or_none_is_refused(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool, api: str, secret_key: str
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    async with key_client(api, secret_key) as other:
        foreign, _ = await _customer(other)
    for customer in (foreign, "cust_missing"):
        refused = await tenant.client.post(
            SINGLE, json={"eventName": name, "payload": {"customer": customer, "value": 1}}
        )
        assert refused.status_code == 400
        error = error_of(refused)
        assert (error["param"], error["code"]) == ("payload.customer", "resource_missing")
    assert await _mine(meter_api, tenant.account) == []


async def test_timestamps_in_the_future_too_old_or_before_the_invoiced_boundary(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    meter_pk = await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    now = int(time.time())

    async def send(ts: int) -> httpx.Response:
        return await tenant.client.post(
            SINGLE,
            json={
                "eventName": name,
                "payload": {"customer": customer, "value": 1},
                "timestamp": ts,
            },
        )

    for ts, code in (
        (now + 3600, "timestamp_in_future"),
        (now - MAX_AGE_S - 3600, "timestamp_too_old"),
    ):
        refused = await send(ts)
        assert refused.status_code == 400, refused.text
        assert (error_of(refused)["param"], error_of(refused)["code"]) == ("timestamp", code)
    boundary = now - 600
    assert (await send(boundary - 60)).status_code == 200  # cached: no boundary yet
    await pool.execute(
        "INSERT INTO meter_closes (meter_pk, customer_pk, closing_until, updated)"
        " VALUES ($1, $2, $3, 0)",
        meter_pk,
        await _customer_pk(pool, customer),
        boundary,
    )
    await pool.execute("UPDATE meter_epoch SET epoch = epoch + 1")
    began = time.monotonic()

    async def refused_now() -> httpx.Response | None:
        r = await send(boundary - 60)
        return r if r.status_code == 400 else None

    refused = await eventually(refused_now, timeout_s=5)
    assert time.monotonic() - began < 1.5  # within the poll, not a cache lifetime
    error = error_of(refused)
    assert (error["param"], error["code"]) == ("timestamp", "timestamp_in_invoiced_period")
    assert str(boundary) in error["message"]
    assert (await send(boundary)).status_code == 200


async def test_a_test_clocks_time_is_the_customers_now(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    price = await metered_price(tenant.client)
    sub = await subscribe(tenant.client, price["id"], clock=T0)
    customer = sub["customer"]
    default = await tenant.client.post(
        SINGLE, json={"eventName": name, "payload": {"customer": customer, "value": 1}}
    )
    assert default.status_code == 200, default.text
    assert default.json()["timestamp"] == T0
    at_clock = await tenant.client.post(
        SINGLE,
        json={
            "eventName": name,
            "payload": {"customer": customer, "value": 1},
            "timestamp": T0 - 60,
        },
    )
    assert at_clock.status_code == 200, at_clock.text  # 11 months before real time
    real_now = await tenant.client.post(
        SINGLE,
        json={
            "eventName": name,
            "payload": {"customer": customer, "value": 1},
            "timestamp": int(time.time()),
        },
    )
    assert error_of(real_now)["code"] == "timestamp_in_future"
    stamps = [e[5] for _, evs in await _mine(meter_api, tenant.account) for e in evs]
    assert stamps == [T0, T0 - 60]


async def test_a_restricted_key_may_send_meter_events(
    meter_api: Api, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    async with pool.acquire() as conn:
        restricted = await create_key(conn, tenant.account, livemode=False, restricted=True)
    async with key_client(meter_api.url, restricted.secret) as c:
        event = {"eventName": name, "payload": {"customer": customer, "value": 1}}
        assert (await c.post(SINGLE, json=event)).status_code == 200
        assert (await c.post(BATCH, json={"events": [event]})).status_code == 200
        assert (await c.get("/v1/customers")).status_code == 403
    assert len(await _mine(meter_api, tenant.account)) == 2


async def test_a_key_over_its_usage_rate_limit_gets_429(meter_api: Api, pool: asyncpg.Pool) -> None:
    account, key = await limited_account(pool, usage_rate=1, usage_burst=3)
    name = _name()
    await _meter(pool, account, name)
    async with key_client(meter_api.url, key) as c:
        customer, _ = await _customer(c)
        event = {"eventName": name, "payload": {"customer": customer, "value": 1}}
        admitted, refused = await until_refused(lambda: c.post(SINGLE, json=event))
    assert 3 <= admitted <= 5
    assert refused.headers["Retry-After"] == "1"
    assert (error_of(refused)["type"], error_of(refused)["code"]) == (
        "rate_limit_error",
        "rate_limited",
    )
    assert len(await _mine(meter_api, account)) == admitted


@pytest.fixture(scope="module")
def frozen_broker() -> Iterator[PausableBroker]:
    broker = PausableBroker()
    broker.start()
    yield broker
    broker.stop()


async def test_kafka_away_is_a_503_that_leaves_nothing_claimed(
    settings: Settings, tenant: Tenant, pool: asyncpg.Pool, frozen_broker: PausableBroker
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    event = {"eventName": name, "payload": {"customer": customer, "value": 4}, "identifier": "k1"}
    async with (
        api_instance(settings, kafka_bootstrap=frozen_broker.address) as api,
        key_client(api.url, tenant.key) as c,
    ):
        await eventually(lambda: _ready(c))
        frozen_broker.pause()
        try:
            refused = await c.post(SINGLE, json=event, headers={"Idempotency-Key": "kafka-away"})
            refused_batch = await c.post(BATCH, json={"events": [event]})
        finally:
            frozen_broker.resume()
        for response in (refused, refused_batch):
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert "kafka" in error_of(response)["message"]

        async def accepted() -> httpx.Response | None:
            r = await c.post(SINGLE, json=event, headers={"Idempotency-Key": "kafka-away"})
            return r if r.status_code == 200 else None

        # Nothing was kept for the refused requests: the retry is processed anew.
        retried = await eventually(accepted)
        assert "Idempotent-Replayed" not in retried.headers
        assert retried.json()["identifier"] == "k1"
    on_topic = [
        e
        for _, evs in await meter_messages(frozen_broker.address, settings.usage_topic)
        for e in evs
        if e[1] == tenant.account
    ]
    # A produce that timed out may still land once the broker thaws: with the identifier
    # the retry carries, which the aggregator's ledger counts once.
    assert on_topic and {e[0] for e in on_topic} == {"k1"}


async def _ready(c: httpx.AsyncClient) -> bool:
    return (await c.get("/readyz")).status_code == 200


def test_the_largest_message_a_batch_makes_fits_a_broker() -> None:
    """A batch of the most events, all for one meter and customer (one message), with the
    longest identifiers JSON can spell (escaped control characters: 6 bytes each) and the
    widest values, stays below a broker's default 1 MB message limit."""
    widest = Decimal("999999999999999999.999999999999")
    events = [
        MeterEvent(
            "\x01" * MAX_IDENTIFIER, "acct_" + "x" * 40, True, 2**62, 2**62, 2**40, widest, 2**40
        )
        for _ in range(MAX_BATCH_EVENTS)
    ]
    assert len(encode_meter_events(events)) < 1_000_000


async def test_with_postgres_away_the_caches_are_not_trusted_past_their_bound(
    settings: Settings, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    """While the meter epoch cannot be read, cached meters and boundaries may be stale: past
    METER_CACHE_STALE_S the answer is 503, not a check against them; back once it returns."""
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    event = {"eventName": name, "payload": {"customer": customer, "value": 1}}
    db_url = settings.database_url.get_secret_value()
    target = urlsplit(db_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
    await proxy.restore()
    try:
        async with (
            api_instance(settings, database_url=proxied_url(db_url, proxy.port)) as api,
            key_client(api.url, tenant.key) as c,
        ):
            await eventually(lambda: _ready(c))
            assert (await c.post(SINGLE, json=event)).status_code == 200  # cached now
            await proxy.cut()
            await asyncio.sleep(METER_CACHE_STALE_S + 0.3)
            refused = await c.post(SINGLE, json=event)
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "1"
            assert "postgres" in error_of(refused)["message"]
            await proxy.restore()

            async def back() -> bool:
                return (await c.post(SINGLE, json=event)).status_code == 200

            await eventually(back, timeout_s=20)
    finally:
        await proxy.cut()


@given(st.text(max_size=20), st.text(max_size=20), st.sampled_from(range(4)))
def test_nul_is_refused_in_every_string_of_an_event(before: str, after: str, where: int) -> None:
    text = before + "\x00" + after
    event: dict[str, Any] = {"eventName": "calls", "payload": {"customer": "cust_1"}}
    if where == 0:
        event["eventName"] = text[:100]
    elif where == 1:
        event["identifier"] = text[:100]
    elif where == 2:
        event["payload"] = {text[:100]: "x"}
    else:
        event["payload"] = {"customer": text}
    with pytest.raises(ValidationError):
        parse_event_single(json.dumps(event).encode())
    with pytest.raises(ValidationError) as refused:
        parse_events_batch(json.dumps({"events": [event, event | {"identifier": "b"}]}).encode())
    assert {e["loc"][:2] for e in refused.value.errors()} >= {("events", 0)}


async def test_meter_events_and_usage_share_the_processs_in_flight_bound(
    settings: Settings, tenant: Tenant, pool: asyncpg.Pool
) -> None:
    name = _name()
    await _meter(pool, tenant.account, name)
    customer, _ = await _customer(tenant.client)
    body = json.dumps({"eventName": name, "payload": {"customer": customer, "value": 1}}).encode()
    async with api_instance(settings, max_inflight_requests=2) as server:
        port = int(server.url.rsplit(":", 1)[1])
        held = []
        for _ in range(2):  # two meter events in flight: all but their last body byte sent
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {SINGLE} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tenant.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[:-1]
            )
            await writer.drain()
            held.append((reader, writer))
        async with key_client(server.url, tenant.key) as c:

            async def full() -> httpx.Response | None:
                usage = {"subscriptionItem": "si_x", "quantity": 1}
                r = await c.post("/v1/usage_records", json=usage)
                return r if r.status_code == 429 else None

            over = await eventually(full, timeout_s=5)
            assert error_of(over)["code"] == "too_many_requests_in_flight"
            for reader, writer in held:
                writer.write(body[-1:])
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                writer.close()
            after = await c.post(SINGLE, content=body, headers={"content-type": "application/json"})
            assert after.status_code == 200, after.text
