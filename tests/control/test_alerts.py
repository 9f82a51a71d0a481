"""Usage alerts through the API: create, read, list (by meter), activate, deactivate and
archive (final); bodies refused by name with nothing written."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from domain.accounts import create_account
from tests.support.api import post


async def _meter(client: httpx.AsyncClient) -> dict[str, Any]:
    body = {
        "displayName": "Tokens",
        "eventName": f"tokens_{uuid.uuid4().hex[:10]}",
        "defaultAggregation": {"formula": "sum"},
    }
    return await post(client, "/v1/billing/meters", body)


def _alert(meter: str, gte: Any = 1000, **extra: Any) -> dict[str, Any]:
    return {
        "title": "Big spender",
        "alertType": "usage_threshold",
        "usageThreshold": {"meter": meter, "gte": gte, "recurrence": "one_time"},
        **extra,
    }


def _error(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def test_an_alert_lives_until_archived(client: httpx.AsyncClient) -> None:
    meter = await _meter(client)
    customer = (await post(client, "/v1/customers", {"name": "Ada"}))["id"]
    created = await post(
        client, "/v1/billing/alerts", _alert(meter["id"], filter={"customer": customer})
    )
    assert created["id"].startswith("alrt_")
    assert {k: created[k] for k in created if k not in ("id", "created")} == {
        "object": "billing.alert",
        "livemode": False,
        "title": "Big spender",
        "alertType": "usage_threshold",
        "status": "active",
        "usageThreshold": {"meter": meter["id"], "gte": 1000, "recurrence": "one_time"},
        "filter": {"customer": customer},
    }
    path = f"/v1/billing/alerts/{created['id']}"
    assert (await client.get(path)).json() == created

    deactivated = await post(client, f"{path}/deactivate")
    assert deactivated == {**created, "status": "inactive"}
    assert await post(client, f"{path}/deactivate") == deactivated  # already: unchanged
    activated = await post(client, f"{path}/activate")
    assert activated == created
    archived = await post(client, f"{path}/archive")
    assert archived["status"] == "archived"
    for action in ("activate", "deactivate", "archive"):
        error = _error(await client.post(f"{path}/{action}"))
        assert error["code"] == "alert_archived" and created["id"] in error["message"]
    assert (await client.get(path)).json() == archived


async def test_alerts_list_by_meter(client: httpx.AsyncClient) -> None:
    one, two = await _meter(client), await _meter(client)
    first = await post(client, "/v1/billing/alerts", _alert(one["id"], 5))
    second = await post(client, "/v1/billing/alerts", _alert(two["id"], 7))
    third = await post(client, "/v1/billing/alerts", _alert(one["id"], 9))
    assert first["filter"] is None
    listed = (await client.get("/v1/billing/alerts")).json()
    assert listed["url"] == "/v1/billing/alerts" and listed["hasMore"] is False
    assert {a["id"] for a in listed["data"]} == {first["id"], second["id"], third["id"]}
    by_one = (await client.get("/v1/billing/alerts", params={"meter": one["id"]})).json()
    assert {a["id"] for a in by_one["data"]} == {first["id"], third["id"]}
    assert (await client.get("/v1/billing/alerts", params={"meter": "mtr_nope"})).json()[
        "data"
    ] == []
    page = (await client.get("/v1/billing/alerts", params={"limit": 2})).json()
    assert page["hasMore"] is True
    rest = (
        await client.get(
            "/v1/billing/alerts", params={"limit": 2, "startingAfter": page["data"][-1]["id"]}
        )
    ).json()
    assert page["data"] + rest["data"] == listed["data"]
    _error(await client.get("/v1/billing/alerts/alrt_nope"), 404)
    for action in ("activate", "deactivate", "archive"):
        _error(await client.post(f"/v1/billing/alerts/alrt_nope/{action}"), 404)


def _threshold(**change: Any) -> dict[str, Any]:
    threshold: dict[str, Any] = {"meter": "METER", "gte": 10, "recurrence": "one_time"}
    for key, value in change.items():
        if value is None:
            threshold.pop(key)
        else:
            threshold[key] = value
    return threshold


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"title": ""}, "title", None),
        ({"title": "t" * 257}, "title", None),
        ({"title": None}, "title", None),
        ({"alertType": "spend_threshold"}, "alertType", None),
        ({"alertType": None}, "alertType", None),
        ({"usageThreshold": None}, "usageThreshold", None),
        ({"usageThreshold": _threshold(gte=0)}, "usageThreshold.gte", None),
        ({"usageThreshold": _threshold(gte=-5)}, "usageThreshold.gte", None),
        ({"usageThreshold": _threshold(gte=True)}, "usageThreshold.gte", None),
        ({"usageThreshold": _threshold(gte=1.0)}, "usageThreshold.gte", None),
        ({"usageThreshold": _threshold(gte="5")}, "usageThreshold.gte", None),
        ({"usageThreshold": _threshold(gte=2**63)}, "usageThreshold.gte", None),
        ({"usageThreshold": _threshold(gte=None)}, "usageThreshold.gte", None),
        ({"usageThreshold": _threshold(recurrence="daily")}, "usageThreshold.recurrence", None),
        (
            {"usageThreshold": _threshold(meter="mtr_nope")},
            "usageThreshold.meter",
            "resource_missing",
        ),
        ({"usageThreshold": _threshold(meter="")}, "usageThreshold.meter", None),
        ({"usageThreshold": _threshold(extra=1)}, "usageThreshold.extra", None),
        ({"filter": {"customer": "cust_nope"}}, "filter.customer", "resource_missing"),
        ({"filter": {}}, "filter.customer", None),
        ({"filter": {"customer": "c", "subscription": "s"}}, "filter.subscription", None),
        ({"status": "inactive"}, "status", None),
    ],
)
async def test_alert_bodies_are_refused_by_name(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    change: dict[str, Any],
    param: str,
    code: str | None,
) -> None:
    meter = await _meter(client)
    body = _alert(meter["id"])
    for key, value in change.items():
        if value is None:
            body.pop(key)
        elif key == "usageThreshold":
            body[key] = {**value, "meter": meter["id"]} if value["meter"] == "METER" else value
        else:
            body[key] = value
    before = await pool.fetchval("SELECT count(*) FROM billing_alerts")
    error = _error(await client.post("/v1/billing/alerts", json=body))
    assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code
    assert await pool.fetchval("SELECT count(*) FROM billing_alerts") == before


async def test_an_alert_watches_a_meter_of_its_own_account_and_mode(
    api: str, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, other_test, other_live = await create_account(conn, f"other-{uuid.uuid4().hex[:6]}")
    meter = await _meter(client)
    customer = (await post(client, "/v1/customers", {"name": "Ada"}))["id"]
    for key in (other_test, other_live):
        async with httpx.AsyncClient(
            base_url=api, timeout=30, headers={"Authorization": f"Bearer {key}"}
        ) as other:
            error = _error(await other.post("/v1/billing/alerts", json=_alert(meter["id"])))
            assert error["param"] == "usageThreshold.meter"
            own = await _meter(other)
            body = _alert(own["id"], filter={"customer": customer})
            error = _error(await other.post("/v1/billing/alerts", json=body))
            assert error["param"] == "filter.customer"
