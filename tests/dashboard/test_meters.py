"""The Dashboard's meters: the list, a meter's usage per customer and per day (read from
the minute buckets, as the API's summaries are), and usage alerts."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import asyncpg
import httpx

from domain.meters import fold_events
from tests.support.api import post
from tests.support.dashboard import Session
from tests.support.meterdata import Ev, write_events

Sessions = Callable[[str], Awaitable[Session]]
DAY = 86_400


async def test_a_meter_shows_its_usage_per_customer_and_per_day(
    sessions: Sessions, client: httpx.AsyncClient, secret_key: str, pool: asyncpg.Pool
) -> None:
    meter = await post(
        client,
        "/v1/billing/meters",
        {
            "displayName": "Storage",
            "eventName": "gb_stored",
            "defaultAggregation": {"formula": "sum"},
        },
    )
    alice = (await post(client, "/v1/customers", {"name": "Alice"}))["id"]
    bob = (await post(client, "/v1/customers", {"name": "Bob"}))["id"]
    now = int(time.time())
    today = now - now % DAY
    alice_events = [
        Ev("a1", today + 5, Decimal("1.25")),
        Ev("a2", today + 65, 3),
        Ev("a3", today - 2 * DAY + 10, Decimal("0.5")),
        Ev("a4", today - DAY, 100, cancelled=True),
        Ev("a5", today - 40 * DAY, 7),  # older than the page's 30 days
    ]
    await write_events(pool, meter["id"], alice, alice_events)
    await write_events(pool, meter["id"], bob, [Ev("b1", today + 1, 2), Ev("b2", today + 2, 2)])
    await post(
        client,
        "/v1/billing/alerts",
        {
            "title": "Heavy storage",
            "alertType": "usage_threshold",
            "usageThreshold": {"meter": meter["id"], "gte": 1000, "recurrence": "one_time"},
        },
    )
    s = await sessions(secret_key)

    listing = await s.client.get("/dashboard/meters")
    assert listing.status_code == 200
    assert meter["id"] in listing.text and "gb_stored" in listing.text

    page = await s.client.get(f"/dashboard/meters/{meter['id']}")
    assert page.status_code == 200, page.text
    in_range = [e for e in alice_events if e.counted and e.ts >= today - 29 * DAY]
    alice_total = fold_events((e.ts, e.value, e.seq) for e in in_range).total
    assert alice_total == Decimal("4.75")
    assert f"<code>{alice}</code>" in page.text and f"<code>{bob}</code>" in page.text
    assert ">4.75<" in page.text and ">4<" in page.text  # Alice's and Bob's sums
    assert "Heavy storage" in page.text and "≥ 1,000" in page.text

    per_day = await s.client.get(f"/dashboard/meters/{meter['id']}", params={"customer": alice})
    assert per_day.status_code == 200
    rows = per_day.text.split('<table class="usage-days"')[1].split("</table>")[0]
    assert rows.count("<tr>") == 31  # the header and 30 days
    assert "4.25</td>" in rows and "0.5</td>" in rows  # today, and two days ago
    assert "100</td>" not in rows  # the cancelled event counts nowhere

    alerts = await s.client.get("/dashboard/alerts")
    assert alerts.status_code == 200 and "Heavy storage" in alerts.text


async def test_meter_pages_refuse_what_is_not_theirs(
    sessions: Sessions, client: httpx.AsyncClient, secret_key: str
) -> None:
    meter = await post(
        client,
        "/v1/billing/meters",
        {"displayName": "Calls", "eventName": "calls", "defaultAggregation": {"formula": "count"}},
    )
    s = await sessions(secret_key)
    missing = await s.client.get("/dashboard/meters/mtr_nothere")
    assert missing.status_code == 404 and "no such meter" in missing.text
    bad = await s.client.get(f"/dashboard/meters/{meter['id']}", params={"customer": "a b"})
    assert bad.status_code == 400 and "customer must be an object id" in bad.text
    unknown = await s.client.get(
        f"/dashboard/meters/{meter['id']}", params={"customer": "cust_nothere"}
    )
    assert unknown.status_code == 404 and "no such customer" in unknown.text
