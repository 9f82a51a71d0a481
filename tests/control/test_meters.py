"""Billing meters through the API: create, read, list, rename, deactivate and reactivate
(one active meter per event name); event summaries answered from minute buckets, checked
against ``domain.meters.fold_events``; the events list with each event's status; cancel
adjustments; what a restricted key may call. The aggregator's rows are written straight
into Postgres (``tests.support.meterdata``)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domain.meters import decimal_text, fold_events, formula_value
from domain.store.meters import meter_epoch
from tests.support.api import post
from tests.support.meterdata import Ev, close_until, write_events

DAY0 = 1_779_926_400  # a UTC midnight
HOUR = 3_600
DAY = 86_400


def _name() -> str:
    return f"api_requests_{uuid.uuid4().hex[:10]}"


async def _meter(client: httpx.AsyncClient, formula: str = "sum", **extra: Any) -> dict[str, Any]:
    body = {
        "displayName": "API requests",
        "eventName": _name(),
        "defaultAggregation": {"formula": formula},
        **extra,
    }
    return await post(client, "/v1/billing/meters", body)


async def _customer(client: httpx.AsyncClient) -> str:
    created = await post(client, "/v1/customers", {"name": "Ada"})
    customer: str = created["id"]
    return customer


def _error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


@asynccontextmanager
async def _as(api: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=api, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as c:
        yield c


# ---------------------------------------------------------------- meters


async def test_a_meter_reads_back_as_written(client: httpx.AsyncClient) -> None:
    name = _name()
    body = {
        "displayName": "Tokens",
        "eventName": name,
        "defaultAggregation": {"formula": "max"},
        "customerMapping": {"type": "by_id", "eventPayloadKey": "stripe_customer"},
        "valueSettings": {"eventPayloadKey": "tokens"},
    }
    created = await post(client, "/v1/billing/meters", body)
    assert created["id"].startswith("mtr_")
    expected = {
        "object": "billing.meter",
        "livemode": False,
        "displayName": "Tokens",
        "eventName": name,
        "status": "active",
        "defaultAggregation": {"formula": "max"},
        "customerMapping": {"type": "by_id", "eventPayloadKey": "stripe_customer"},
        "valueSettings": {"eventPayloadKey": "tokens"},
        "statusTransitions": {"deactivatedAt": None},
    }
    assert {k: created[k] for k in expected} == expected
    assert created["updated"] == created["created"]
    fetched = (await client.get(f"/v1/billing/meters/{created['id']}")).json()
    assert fetched == created
    listed = (await client.get("/v1/billing/meters")).json()
    assert listed["object"] == "list" and listed["url"] == "/v1/billing/meters"
    assert listed["data"][0] == created
    renamed = await post(client, f"/v1/billing/meters/{created['id']}", {"displayName": "Toks"})
    assert renamed["displayName"] == "Toks"
    assert {k: renamed[k] for k in renamed if k not in ("displayName", "updated")} == {
        k: created[k] for k in created if k not in ("displayName", "updated")
    }
    assert (await client.get(f"/v1/billing/meters/{created['id']}")).json() == renamed


async def test_payload_keys_default_to_customer_and_value(client: httpx.AsyncClient) -> None:
    meter = await _meter(client, "count")
    assert meter["customerMapping"] == {"type": "by_id", "eventPayloadKey": "customer"}
    assert meter["valueSettings"] == {"eventPayloadKey": "value"}
    assert meter["defaultAggregation"] == {"formula": "count"}


async def test_one_active_meter_per_event_name(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    first = await _meter(client)
    name = first["eventName"]
    body = {"displayName": "again", "eventName": name, "defaultAggregation": {"formula": "sum"}}
    epoch = await meter_epoch(pool)
    error = _error(await client.post("/v1/billing/meters", json=body))
    assert error["code"] == "meter_event_name_taken" and error["param"] == "eventName"
    assert first["id"] in error["message"]
    assert await meter_epoch(pool) == epoch  # refused: nothing written
    assert await pool.fetchval("SELECT count(*) FROM meters WHERE event_name = $1", name) == 1

    deactivated = await post(client, f"/v1/billing/meters/{first['id']}/deactivate")
    assert deactivated["status"] == "inactive"
    assert deactivated["statusTransitions"]["deactivatedAt"] == deactivated["updated"]
    assert await meter_epoch(pool) > epoch
    # Deactivating again changes nothing (and moves no epoch).
    epoch = await meter_epoch(pool)
    assert await post(client, f"/v1/billing/meters/{first['id']}/deactivate") == deactivated
    assert await meter_epoch(pool) == epoch
    # A rename of an inactive meter keeps its deactivation time.
    renamed = await post(client, f"/v1/billing/meters/{first['id']}", {"displayName": "old"})
    assert renamed["statusTransitions"] == deactivated["statusTransitions"]

    second = await post(client, "/v1/billing/meters", body)
    assert second["status"] == "active" and second["eventName"] == name
    error = _error(await client.post(f"/v1/billing/meters/{first['id']}/reactivate"))
    assert error["code"] == "meter_event_name_taken" and second["id"] in error["message"]
    assert (await client.get(f"/v1/billing/meters/{first['id']}")).json()["status"] == "inactive"

    await post(client, f"/v1/billing/meters/{second['id']}/deactivate")
    epoch = await meter_epoch(pool)
    reactivated = await post(client, f"/v1/billing/meters/{first['id']}/reactivate")
    assert reactivated["status"] == "active"
    assert reactivated["statusTransitions"] == {"deactivatedAt": None}
    assert await meter_epoch(pool) > epoch


async def test_meters_list_by_status_one_page_at_a_time(client: httpx.AsyncClient) -> None:
    made = [await _meter(client) for _ in range(3)]
    await post(client, f"/v1/billing/meters/{made[1]['id']}/deactivate")
    active = (await client.get("/v1/billing/meters", params={"status": "active"})).json()
    assert {m["id"] for m in active["data"]} == {made[2]["id"], made[0]["id"]}
    inactive = (await client.get("/v1/billing/meters", params={"status": "inactive"})).json()
    assert [m["id"] for m in inactive["data"]] == [made[1]["id"]]
    everything = (await client.get("/v1/billing/meters")).json()["data"]
    first = (await client.get("/v1/billing/meters", params={"limit": 2})).json()
    assert first["hasMore"] is True and len(first["data"]) == 2
    after = first["data"][-1]["id"]
    rest = (
        await client.get("/v1/billing/meters", params={"limit": 2, "startingAfter": after})
    ).json()
    assert rest["hasMore"] is False
    assert first["data"] + rest["data"] == everything
    assert {m["id"] for m in everything} == {m["id"] for m in made}
    error = _error(await client.get("/v1/billing/meters", params={"status": "deleted"}))
    assert error["param"] == "status"


def _create(**change: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "displayName": "API requests",
        "eventName": "requests",
        "defaultAggregation": {"formula": "sum"},
    }
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    return body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_create(displayName=None), "displayName"),
        (_create(displayName=""), "displayName"),
        (_create(displayName="x" * 251), "displayName"),
        (_create(eventName=None), "eventName"),
        (_create(eventName="e" * 101), "eventName"),
        (_create(eventName="a\x00b"), "eventName"),
        (_create(eventName=5), "eventName"),
        (_create(defaultAggregation=None), "defaultAggregation"),
        (_create(defaultAggregation={"formula": "avg"}), "defaultAggregation.formula"),
        (_create(defaultAggregation={"formula": "sum", "x": 1}), "defaultAggregation.x"),
        (
            _create(customerMapping={"type": "by_key", "eventPayloadKey": "c"}),
            "customerMapping.type",
        ),
        (_create(customerMapping={"type": "by_id"}), "customerMapping.eventPayloadKey"),
        (
            _create(customerMapping={"type": "by_id", "eventPayloadKey": ""}),
            "customerMapping.eventPayloadKey",
        ),
        (_create(valueSettings={"eventPayloadKey": "k" * 101}), "valueSettings.eventPayloadKey"),
        (_create(valueSettings={"eventPayloadKey": "customer"}), "valueSettings.eventPayloadKey"),
        (_create(status="inactive"), "status"),
    ],
)
async def test_meter_bodies_are_refused_by_name(
    client: httpx.AsyncClient, body: dict[str, Any], param: str
) -> None:
    before = (await client.get("/v1/billing/meters", params={"limit": 100})).json()["data"]
    error = _error(await client.post("/v1/billing/meters", json=body))
    assert error["param"] == param, error
    after = (await client.get("/v1/billing/meters", params={"limit": 100})).json()["data"]
    assert after == before


async def test_a_rename_takes_a_display_name_only(client: httpx.AsyncClient) -> None:
    meter = await _meter(client)
    path = f"/v1/billing/meters/{meter['id']}"
    assert (
        _error(await client.post(path, json={"displayName": "x", "eventName": "y"}))["param"]
        == "eventName"
    )
    assert _error(await client.post(path, json={}))["param"] == "displayName"
    assert _error(await client.post(path, json={"displayName": ""}))["param"] == "displayName"
    assert (await client.get(path)).json() == meter
    missing = _error(
        await client.post("/v1/billing/meters/mtr_nope", json={"displayName": "x"}), 404
    )
    assert missing["param"] == "id"
    for action in ("deactivate", "reactivate"):
        _error(await client.post(f"/v1/billing/meters/mtr_nope/{action}"), 404)
    _error(await client.get("/v1/billing/meters/mtr_nope"), 404)


# ---------------------------------------------------------------- summaries


def _events() -> list[Ev]:
    """Events over two days, several per minute, decimals among them, ties at one second."""
    out = []
    offsets = [0, 59, 60, 61, 1_799, 3_599, 3_600, 3_601, 10_860, 10_860, 40_000, DAY - 1, DAY + 5]
    for i, offset in enumerate(offsets):
        value: int | Decimal = Decimal(f"{i}.25") if i % 3 == 0 else 10 + i
        out.append(Ev(f"ev{i}", DAY0 + offset, value, seq=i * 1_000_003))
    out.append(Ev("gone", DAY0 + 120, 1_000, cancelled=True))
    out.append(Ev("late", DAY0 + 180, 2_000, rejected="period_invoiced"))
    return out


def _expected(events: list[Ev], formula: str, lo: int, hi: int) -> str:
    inside = [(e.ts, e.value, e.seq) for e in events if e.counted and lo <= e.ts < hi]
    value = formula_value(formula, fold_events(inside))  # type: ignore[arg-type]
    return decimal_text(value)


async def _summaries(client: httpx.AsyncClient, meter: str, **query: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/billing/meters/{meter}/event_summaries", params=query)
    assert response.status_code == 200, response.text
    listed = response.json()
    assert listed["object"] == "list" and listed["hasMore"] is False
    assert listed["url"] == f"/v1/billing/meters/{meter}/event_summaries"
    data: list[dict[str, Any]] = listed["data"]
    return data


@pytest.mark.parametrize("formula", ["sum", "count", "max", "last"])
async def test_summaries_fold_the_buckets(
    client: httpx.AsyncClient, pool: asyncpg.Pool, formula: str
) -> None:
    meter = await _meter(client, formula)
    customer = await _customer(client)
    events = _events()
    await write_events(pool, meter["id"], customer, events)
    start, end = DAY0 + 30 * 60, DAY0 + 3 * HOUR + 15 * 60
    whole = await _summaries(client, meter["id"], customer=customer, startTime=start, endTime=end)
    assert len(whole) == 1
    summary = whole[0]
    assert summary["id"].startswith("mtrsum_")
    assert {k: summary[k] for k in summary if k != "id" and not k.startswith("aggregated")} == {
        "object": "billing.meter_event_summary",
        "meter": meter["id"],
        "customer": customer,
        "livemode": False,
        "startTime": start,
        "endTime": end,
    }
    assert summary["aggregatedValueDecimal"] == _expected(events, formula, start, end)
    assert summary["aggregatedValue"] == float(Decimal(summary["aggregatedValueDecimal"]))

    hourly = await _summaries(
        client,
        meter["id"],
        customer=customer,
        startTime=start,
        endTime=end,
        valueGroupingWindow="hour",
    )
    bounds = [
        (start, DAY0 + HOUR),
        (DAY0 + HOUR, DAY0 + 2 * HOUR),
        (DAY0 + 2 * HOUR, DAY0 + 3 * HOUR),
        (DAY0 + 3 * HOUR, end),
    ]
    assert [(s["startTime"], s["endTime"]) for s in hourly] == bounds
    assert [s["aggregatedValueDecimal"] for s in hourly] == [
        _expected(events, formula, lo, hi) for lo, hi in bounds
    ]
    assert hourly[2]["aggregatedValueDecimal"] == "0"  # an empty window is listed too
    assert hourly[2]["aggregatedValue"] == 0
    assert len({s["id"] for s in hourly}) == 4

    start, end = DAY0 - DAY + 3 * HOUR, DAY0 + DAY + HOUR
    daily = await _summaries(
        client,
        meter["id"],
        customer=customer,
        startTime=start,
        endTime=end,
        valueGroupingWindow="day",
    )
    bounds = [(start, DAY0), (DAY0, DAY0 + DAY), (DAY0 + DAY, end)]
    assert [(s["startTime"], s["endTime"]) for s in daily] == bounds
    assert [s["aggregatedValueDecimal"] for s in daily] == [
        _expected(events, formula, lo, hi) for lo, hi in bounds
    ]
    assert daily[1]["aggregatedValueDecimal"] != "0"


async def test_a_summary_keeps_its_id_and_every_digit(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    meter = await _meter(client)
    customer = await _customer(client)
    values = [Decimal("0.000000000001"), Decimal("999999999999999999.999999999999")]
    await write_events(
        pool, meter["id"], customer, [Ev(f"d{i}", DAY0 + i, v) for i, v in enumerate(values)]
    )
    query = {"customer": customer, "startTime": DAY0, "endTime": DAY0 + 60}
    first = await _summaries(client, meter["id"], **query)
    again = await _summaries(client, meter["id"], **query)
    assert first == again
    assert first[0]["aggregatedValueDecimal"] == "1000000000000000000"
    other = await _summaries(client, meter["id"], **{**query, "endTime": DAY0 + 120})
    assert other[0]["id"] != first[0]["id"]
    assert other[0]["aggregatedValueDecimal"] == first[0]["aggregatedValueDecimal"]


async def test_at_most_1000_windows(client: httpx.AsyncClient) -> None:
    meter = await _meter(client)
    customer = await _customer(client)
    hours = await _summaries(
        client,
        meter["id"],
        customer=customer,
        startTime=DAY0,
        endTime=DAY0 + 1000 * HOUR,
        valueGroupingWindow="hour",
    )
    assert len(hours) == 1000 and {s["aggregatedValue"] for s in hours} == {0}
    path = f"/v1/billing/meters/{meter['id']}/event_summaries"
    for window, size in (("hour", HOUR), ("day", DAY)):
        query: dict[str, Any] = {
            "customer": customer,
            "startTime": DAY0 + 60,  # 1000 windows' length, but it starts mid-window: 1001
            "endTime": DAY0 + 1000 * size + 60,
            "valueGroupingWindow": window,
        }
        error = _error(await client.get(path, params=query))
        assert error["param"] == "endTime" and "1001" in error["message"], error


async def test_summary_queries_are_refused_by_name(client: httpx.AsyncClient) -> None:
    meter = await _meter(client)
    customer = await _customer(client)
    path = f"/v1/billing/meters/{meter['id']}/event_summaries"
    good: dict[str, Any] = {"customer": customer, "startTime": DAY0, "endTime": DAY0 + HOUR}
    cases: list[tuple[dict[str, Any], str, int]] = [
        ({**good, "startTime": DAY0 + 1}, "startTime", 400),
        ({**good, "endTime": DAY0 + HOUR + 30}, "endTime", 400),
        ({**good, "endTime": DAY0}, "endTime", 400),
        ({**good, "endTime": DAY0 - 60}, "endTime", 400),
        ({**good, "startTime": "soon"}, "startTime", 400),
        ({**good, "startTime": "1.5"}, "startTime", 400),
        ({**good, "startTime": -60}, "startTime", 400),
        ({**good, "valueGroupingWindow": "week"}, "valueGroupingWindow", 400),
        ({**good, "window": "hour"}, "window", 400),
        ({k: v for k, v in good.items() if k != "customer"}, "customer", 400),
        ({k: v for k, v in good.items() if k != "startTime"}, "startTime", 400),
        ({k: v for k, v in good.items() if k != "endTime"}, "endTime", 400),
        ({**good, "customer": "cust_nope"}, "customer", 404),
    ]
    for query, param, status in cases:
        error = _error(await client.get(path, params=query), status)
        assert error["param"] == param, (query, error)
    minute = _error(await client.get(path, params={**good, "startTime": DAY0 + 1}))
    assert "minute" in minute["message"]
    missing = _error(
        await client.get("/v1/billing/meters/mtr_nope/event_summaries", params=good), 404
    )
    assert missing["param"] == "id"


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    offsets=st.lists(st.integers(0, 2 * DAY), min_size=0, max_size=25),
    values=st.lists(st.integers(0, 10**6), min_size=25, max_size=25),
    cut=st.tuples(st.integers(0, 48 * 60), st.integers(1, 48 * 60)),
    window=st.sampled_from([None, "hour", "day"]),
)
async def test_any_range_matches_the_events_it_holds(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    offsets: list[int],
    values: list[int],
    cut: tuple[int, int],
    window: str | None,
) -> None:
    meter = await _meter(client, "sum")
    customer = await _customer(client)
    events = [Ev(f"p{i}", DAY0 + o, values[i], seq=i) for i, o in enumerate(offsets)]
    await write_events(pool, meter["id"], customer, events)
    start = DAY0 + min(cut[0], cut[1] - 1) * 60
    end = DAY0 + max(cut[1], cut[0] + 1) * 60
    query: dict[str, Any] = {"customer": customer, "startTime": start, "endTime": end}
    if window is not None:
        query["valueGroupingWindow"] = window
    data = await _summaries(client, meter["id"], **query)
    assert data[0]["startTime"] == start and data[-1]["endTime"] == end
    for one, following in itertools.pairwise(data):
        assert one["endTime"] == following["startTime"]
    for s in data:
        assert s["aggregatedValueDecimal"] == _expected(events, "sum", s["startTime"], s["endTime"])
    assert sum(int(s["aggregatedValueDecimal"]) for s in data) == int(
        _expected(events, "sum", start, end)
    )


# ---------------------------------------------------------------- events


async def test_the_events_list_shows_every_status_newest_first(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    meter = await _meter(client)
    customer = await _customer(client)
    events = [
        Ev("a", DAY0 + 10, 5),
        Ev("b", DAY0 + 30, Decimal("2.5"), seq=1),
        Ev("c", DAY0 + 30, 7, seq=2),  # a tie at one timestamp: identifier order
        Ev("d", DAY0 + 20, 9, cancelled=True),
        Ev("e", DAY0 + 40, 11, rejected="period_invoiced"),
    ]
    await write_events(pool, meter["id"], customer, events)
    other = await _customer(client)
    await write_events(pool, meter["id"], other, [Ev("x", DAY0 + 50, 1)])
    meter_pk = await pool.fetchval("SELECT pk FROM meters WHERE id = $1", meter["id"])
    await pool.execute(  # a cancel whose event has not arrived: no event yet
        "INSERT INTO meter_events (meter_pk, identifier, cancelled_at) VALUES ($1, 'z', 1)",
        meter_pk,
    )
    path = f"/v1/billing/meters/{meter['id']}/events"
    listed = (await client.get(path, params={"customer": customer})).json()
    assert listed["url"] == path and listed["hasMore"] is False
    assert [(e["identifier"], e["status"]) for e in listed["data"]] == [
        ("e", "rejected"),
        ("c", "counted"),
        ("b", "counted"),
        ("d", "cancelled"),
        ("a", "counted"),
    ]
    b = listed["data"][2]
    assert b == {
        "object": "billing.meter_event",
        "identifier": "b",
        "eventName": meter["eventName"],
        "meter": meter["id"],
        "customer": customer,
        "timestamp": DAY0 + 30,
        "created": DAY0 + 31,
        "livemode": False,
        "value": 2.5,
        "valueDecimal": "2.5",
        "status": "counted",
        "cancelledAt": None,
        "rejectedReason": None,
    }
    assert listed["data"][0]["rejectedReason"] == "period_invoiced"
    assert listed["data"][3]["cancelledAt"] == DAY0 + 22
    assert listed["data"][4]["value"] == 5

    seen: list[str] = []
    query: dict[str, Any] = {"customer": customer, "limit": 2}
    while True:
        page = (await client.get(path, params=query)).json()
        seen += [e["identifier"] for e in page["data"]]
        if not page["hasMore"]:
            break
        query["startingAfter"] = page["data"][-1]["identifier"]
    assert seen == ["e", "c", "b", "d", "a"]

    refusals: list[tuple[dict[str, Any], str, int]] = [
        ({"customer": customer, "startingAfter": "x"}, "startingAfter", 400),  # another's
        ({"customer": customer, "startingAfter": "z"}, "startingAfter", 400),  # no event yet
        ({"customer": customer, "limit": 0}, "limit", 400),
        ({}, "customer", 400),
        ({"customer": "cust_nope"}, "customer", 404),
    ]
    for query, param, status in refusals:
        error = _error(await client.get(path, params=query), status)
        assert error["param"] == param, (query, error)
    _error(
        await client.get("/v1/billing/meters/mtr_nope/events", params={"customer": customer}), 404
    )


# ---------------------------------------------------------------- cancel adjustments


async def _cancel(
    client: httpx.AsyncClient, event_name: str, identifier: str, **kw: Any
) -> dict[str, Any]:
    body = {"eventName": event_name, "type": "cancel", "cancel": {"identifier": identifier}}
    return await post(client, "/v1/billing/meter_event_adjustments", body, **kw)


async def test_a_cancel_takes_the_event_out_of_its_usage(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    meter = await _meter(client)
    customer = await _customer(client)
    events = [Ev("keep", DAY0 + 1, 5, seq=1), Ev("drop", DAY0 + 2, 7, seq=2)]
    await write_events(pool, meter["id"], customer, events)
    query = {"customer": customer, "startTime": DAY0, "endTime": DAY0 + 60}
    assert (await _summaries(client, meter["id"], **query))[0]["aggregatedValue"] == 12

    adjustment = await _cancel(client, meter["eventName"], "drop", key=f"cancel-{uuid.uuid4()}")
    assert adjustment["id"].startswith("mtradj_")
    assert {k: adjustment[k] for k in adjustment if k not in ("id", "created")} == {
        "object": "billing.meter_event_adjustment",
        "livemode": False,
        "eventName": meter["eventName"],
        "type": "cancel",
        "cancel": {"identifier": "drop"},
        "status": "complete",
    }
    assert (await _summaries(client, meter["id"], **query))[0]["aggregatedValue"] == 5
    listed = (
        await client.get(f"/v1/billing/meters/{meter['id']}/events", params={"customer": customer})
    ).json()["data"]
    assert [(e["identifier"], e["status"]) for e in listed] == [
        ("drop", "cancelled"),
        ("keep", "counted"),
    ]
    again = await _cancel(client, meter["eventName"], "drop")
    assert again["status"] == "complete"
    assert (await _summaries(client, meter["id"], **query))[0]["aggregatedValue"] == 5


async def test_a_cancel_before_its_event_is_pending(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    meter = await _meter(client)
    adjustment = await _cancel(client, meter["eventName"], "not-yet")
    assert adjustment["status"] == "pending"
    row = await pool.fetchrow(
        "SELECT v.value, v.cancelled_at FROM meter_events v JOIN meters m ON m.pk = v.meter_pk"
        " WHERE m.id = $1 AND v.identifier = 'not-yet'",
        meter["id"],
    )
    assert row is not None and row["value"] is None and row["cancelled_at"] is not None
    assert (await _cancel(client, meter["eventName"], "not-yet"))["status"] == "pending"


async def test_a_replayed_cancel_answers_the_same(client: httpx.AsyncClient) -> None:
    meter = await _meter(client)
    body = {"eventName": meter["eventName"], "type": "cancel", "cancel": {"identifier": "r"}}
    headers = {"Idempotency-Key": f"adj-{uuid.uuid4()}"}
    first = await client.post("/v1/billing/meter_event_adjustments", json=body, headers=headers)
    second = await client.post("/v1/billing/meter_event_adjustments", json=body, headers=headers)
    assert first.status_code == second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    other = {**body, "cancel": {"identifier": "s"}}
    reused = await client.post("/v1/billing/meter_event_adjustments", json=other, headers=headers)
    assert _error(reused)["type"] == "idempotency_error"


async def test_an_invoiced_event_cannot_be_cancelled(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    meter = await _meter(client)
    customer = await _customer(client)
    await write_events(
        pool, meter["id"], customer, [Ev("billed", DAY0 + 5, 3), Ev("open", DAY0 + DAY, 4)]
    )
    await close_until(pool, meter["id"], customer, DAY0 + DAY)
    before = await pool.fetch("SELECT * FROM meter_events ORDER BY meter_pk, identifier")
    body = {"eventName": meter["eventName"], "type": "cancel", "cancel": {"identifier": "billed"}}
    error = _error(await client.post("/v1/billing/meter_event_adjustments", json=body))
    assert error["code"] == "event_in_invoiced_period"
    assert error["param"] == "cancel.identifier"
    assert await pool.fetch("SELECT * FROM meter_events ORDER BY meter_pk, identifier") == before
    assert (await _cancel(client, meter["eventName"], "open"))["status"] == "complete"


async def test_adjustment_bodies_are_refused_by_name(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    meter = await _meter(client)
    inactive = await _meter(client)
    await post(client, f"/v1/billing/meters/{inactive['id']}/deactivate")
    good = {"eventName": meter["eventName"], "type": "cancel", "cancel": {"identifier": "i"}}
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({**good, "type": "update"}, "type", None),
        ({k: v for k, v in good.items() if k != "type"}, "type", None),
        ({k: v for k, v in good.items() if k != "cancel"}, "cancel", None),
        ({**good, "cancel": {}}, "cancel.identifier", None),
        ({**good, "cancel": {"identifier": ""}}, "cancel.identifier", None),
        ({**good, "cancel": {"identifier": "i" * 101}}, "cancel.identifier", None),
        ({**good, "cancel": {"identifier": 7}}, "cancel.identifier", None),
        ({**good, "extra": 1}, "extra", None),
        ({**good, "eventName": _name()}, "eventName", "meter_not_found"),
        ({**good, "eventName": inactive["eventName"]}, "eventName", "meter_not_found"),
    ]
    before = await pool.fetchval("SELECT count(*) FROM meter_events")
    for body, param, code in cases:
        error = _error(await client.post("/v1/billing/meter_event_adjustments", json=body))
        assert error["param"] == param, (body, error)
        if code is not None:
            assert error["code"] == code
    assert await pool.fetchval("SELECT count(*) FROM meter_events") == before


# ---------------------------------------------------------------- restricted keys


async def test_a_restricted_key_reads_summaries_and_cancels_only(
    api: str, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    meter = await _meter(client)
    customer = await _customer(client)
    await write_events(pool, meter["id"], customer, [Ev("one", DAY0 + 1, 4)])
    producer = await post(client, "/v1/api_keys", {"restricted": True, "name": "producer"})
    async with _as(api, producer["secret"]) as rk:
        window: dict[str, Any] = {"customer": customer, "startTime": DAY0, "endTime": DAY0 + 60}
        summaries = await rk.get(f"/v1/billing/meters/{meter['id']}/event_summaries", params=window)
        assert summaries.status_code == 200, summaries.text
        assert summaries.json()["data"][0]["aggregatedValue"] == 4
        assert (await _cancel(rk, meter["eventName"], "one"))["status"] == "complete"
        refused = [
            await rk.get("/v1/billing/meters"),
            await rk.get(f"/v1/billing/meters/{meter['id']}"),
            await rk.post("/v1/billing/meters", json=_create(eventName=_name())),
            await rk.post(f"/v1/billing/meters/{meter['id']}", json={"displayName": "x"}),
            await rk.post(f"/v1/billing/meters/{meter['id']}/deactivate"),
            await rk.post(f"/v1/billing/meters/{meter['id']}/reactivate"),
            await rk.get(f"/v1/billing/meters/{meter['id']}/events", params={"customer": customer}),
            await rk.get("/v1/billing/alerts"),
        ]
        for response in refused:
            assert _error(response, 403)["type"] == "permission_error"
    assert (await client.get(f"/v1/billing/meters/{meter['id']}")).json() == meter
