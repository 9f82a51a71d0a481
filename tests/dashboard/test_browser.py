"""The Dashboard in a real browser (Debian's chromium, driven by Playwright), used as a
person follows the guide: log in with the key, find the subscription, watch the reported
usage and its chart, press Advance billing period, see the paid invoice and the delivered
webhook. Then the refusals (bad and restricted keys, forged forms), logging out, and every
page at a phone's width with its accessibility checked. Screenshots go to
``artifacts/dashboard/``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from aggregator.worker import Aggregator
from dispatcher.worker import Dispatcher
from infra.devenv import free_port
from invoicer.worker import Invoicer
from tests.dashboard.checks import PHONE, accessibility_problems, page_width
from tests.support import billing
from tests.support.api import eventually, metered_price, post, subscribe
from tests.support.server import LiveServer
from tests.support.webhooks import Receiver

WAIT_MS = 15_000  # the page polls every 2 s; the roles are stepped by the test meanwhile


@pytest.fixture
async def context(browser: Browser, api: str) -> AsyncIterator[BrowserContext]:
    made = await browser.new_context(base_url=api, viewport={"width": 1280, "height": 900})
    made.set_default_timeout(WAIT_MS)
    try:
        yield made
    finally:
        await made.close()


async def log_in(page: Page, key: str) -> None:
    """Open the Dashboard and log in as a person does: the label, the field, the button."""
    await page.goto("/dashboard")
    await expect(page).to_have_url("/dashboard/login")
    await page.get_by_label("Secret key").fill(key)
    await page.get_by_role("button", name="Log in").click()


async def reported(client: httpx.AsyncClient, item: str, *quantities: int, key: str) -> None:
    """Usage as a producer reports it (the guide's first record, then a batch)."""
    now = int(time.time())
    if len(quantities) == 1:
        body: dict[str, Any] = {
            "subscriptionItem": item,
            "quantity": quantities[0],
            "timestamp": now,
            "action": "increment",
        }
        await post(client, "/v1/usage_records", body, key=key)
    else:
        records = [{"quantity": q, "timestamp": now, "action": "increment"} for q in quantities]
        await post(
            client,
            "/v1/usage_records/batch",
            {"subscriptionItem": item, "records": records},
            key=key,
        )


async def test_the_guide_walk(
    context: BrowserContext,
    client: httpx.AsyncClient,
    secret_key: str,
    aggregator: Aggregator,
    invoicer: Invoicer,
    dispatcher: Dispatcher,
    artifacts: Path,
) -> None:
    price = await metered_price(client)  # €0.002 a unit, summed over the month
    sub = await subscribe(client, price["id"])
    item = sub["items"]["data"][0]["id"]
    receiver = Receiver()
    async with LiveServer(receiver, free_port()) as hook:
        await post(
            client,
            "/v1/webhook_endpoints",
            {"url": hook.url + "/hooks", "enabledEvents": ["invoice.paid"]},
        )
        await reported(client, item, 18000, key="usage-req-1")
        await aggregator.drain()

        page = await context.new_page()
        await log_in(page, secret_key)
        await expect(page).to_have_url("/dashboard/subscriptions")
        await expect(page.get_by_role("note", name="Test mode")).to_contain_text("Test mode")
        await page.get_by_role("link", name=sub["id"]).click()
        await expect(page.get_by_role("heading", level=1)).to_contain_text(sub["id"])

        usage = page.locator(f'[data-item="{item}"] [data-usage]')
        await expect(usage).to_have_text("18,000")
        chart = page.get_by_role("img", name=f"Usage of {item} over the current period")
        await expect(chart).to_be_visible()
        await expect(page.locator(f'[data-item="{item}"] [data-chart-latest]')).to_have_text(
            "18,000"
        )

        # More usage arrives while the page is open: it updates without a reload.
        await page.evaluate("window.walk = 'same page'")
        await reported(client, item, 400, 20, key="batch-1")
        await aggregator.drain()
        await expect(usage).to_have_text("18,420")
        await expect(page.locator(f'[data-item="{item}"] [data-chart-latest]')).to_have_text(
            "18,420"
        )
        assert await page.evaluate("window.walk") == "same page"
        points = await chart.locator("polyline").get_attribute("points")
        assert points is not None and len(points.split()) >= 2
        await page.screenshot(path=artifacts / "subscription-usage.png", full_page=True)

        # Advance billing period, from the keyboard.
        advance = page.get_by_role("button", name="Advance billing period")
        await advance.focus()
        await page.keyboard.press("Enter")
        await expect(
            page.get_by_role("status").filter(has_text="Billing period advanced")
        ).to_be_visible()
        await page.evaluate("window.walk = 'advanced'")

        async def invoiced() -> bool:
            await invoicer.tick()
            found = (await client.get("/v1/invoices", params={"subscription": sub["id"]})).json()
            return bool(found["data"]) and found["data"][0]["status"] == "paid"

        await eventually(invoiced, timeout_s=30)
        invoice = page.locator("[data-invoice]").first
        await expect(invoice.locator(".badge").first).to_have_text("paid")
        line = invoice.locator("table.lines tbody tr").first
        await expect(line.locator("[data-quantity]")).to_have_text("18,420")
        await expect(line.get_by_text("€0.002")).to_be_visible()  # the unit amount
        await expect(line.locator("[data-amount]")).to_have_text("€36.84")  # 18,420 × €0.002
        await expect(invoice.locator("[data-total]")).to_have_text("€36.84")
        await expect(invoice.locator("table.charges tbody tr").first).to_contain_text("succeeded")
        assert await page.evaluate("window.walk") == "advanced"  # it appeared by itself
        await page.screenshot(path=artifacts / "subscription-invoiced.png", full_page=True)

        # The webhook: delivered to the local receiver, shown with its status code; resend.
        await dispatcher.tick()
        await eventually(lambda: _arrived(receiver, 1))
        await page.get_by_role("navigation").get_by_role("link", name="Webhooks").click()
        row = page.locator("tr[data-delivery]", has_text="invoice.paid")
        await expect(row.locator("[data-status-code]")).to_have_text("200")
        await expect(row.locator(".badge")).to_have_text("delivered")
        await row.get_by_role("button", name="Resend").click()
        await expect(page.get_by_role("status")).to_contain_text("queued again")
        await dispatcher.tick()
        await eventually(lambda: _arrived(receiver, 2))
        assert receiver.arrivals[0].body == receiver.arrivals[1].body
        await page.reload()
        await expect(row.locator("td[data-label=Attempts]")).to_have_text("2")
        await page.screenshot(path=artifacts / "webhooks.png", full_page=True)


async def test_the_chart_follows_usage_over_the_period(
    context: BrowserContext,
    client: httpx.AsyncClient,
    secret_key: str,
    aggregator: Aggregator,
    invoicer: Invoicer,
    artifacts: Path,
) -> None:
    """On a test clock: January's usage invoiced, then February's reported day by day up to
    the clock's "now" (the 13th); the chart rises with it and its data table adds up to the
    billable total. Its screenshot is the README's picture of the Dashboard."""
    price = await billing.price(client)
    sub = await billing.clocked_subscription(client, [{"price": price["id"]}], at=billing.JAN)
    item = sub["items"]["data"][0]["id"]
    await billing.advance(client, sub, billing.JAN + 30 * billing.DAY + 7200)
    for day in range(0, 31, 3):
        await billing.usage(client, item, 400 + 37 * day, billing.JAN + day * billing.DAY + 3600)
    await aggregator.drain()
    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")

    async def january_paid() -> bool:
        await invoicer.tick()
        return any(i["status"] == "paid" for i in await billing.invoices(client, sub["id"]))

    await eventually(january_paid, timeout_s=30)
    await billing.advance(client, sub, billing.FEB + 12 * billing.DAY + 7200)
    daily = [180, 260, 240, 900, 1100, 350, 120, 90, 640, 720, 810, 300, 150]
    for day, quantity in enumerate(daily):
        await billing.usage(client, item, quantity, billing.FEB + day * billing.DAY + 3600)
    await aggregator.drain()

    page = await context.new_page()
    await log_in(page, secret_key)
    await page.goto(f"/dashboard/subscriptions/{sub['id']}")
    scope = page.locator(f'[data-item="{item}"]')
    await expect(scope.locator("[data-usage]")).to_have_text(f"{sum(daily):,}")
    points = await scope.locator("polyline").get_attribute("points")
    assert points is not None
    heights = [float(p.split(",")[1]) for p in points.split()]
    assert heights == sorted(heights, reverse=True), "a sum only rises (y grows downwards)"
    assert heights[-1] < heights[0]
    now_x = float(await scope.locator("line.now").get_attribute("x1") or "nan")
    left, right = 56, 640 - 16
    assert abs((now_x - left) / (right - left) - (12 * 86_400 + 7200) / (28 * 86_400)) < 0.01
    await expect(page.locator("[data-invoice] .badge").first).to_have_text("paid")
    await page.set_viewport_size({"width": 1100, "height": 1400})
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=artifacts / "readme.png", full_page=False)
    await scope.get_by_text("Chart data").click()
    rows = scope.locator("table.data tbody tr")
    await expect(rows).to_have_count(len(daily))
    await expect(rows.last.locator("td").last).to_have_text(f"{sum(daily):,}")


async def _arrived(receiver: Receiver, count: int) -> bool:
    return len([a for a in receiver.arrivals if a.status == 200]) >= count


async def test_login_refuses_bad_and_restricted_keys(
    context: BrowserContext, client: httpx.AsyncClient, artifacts: Path
) -> None:
    page = await context.new_page()
    await log_in(page, "sk_test_" + "x" * 43)
    await expect(page.get_by_role("alert")).to_contain_text("invalid API key provided")
    await expect(page).to_have_url("/dashboard/login")

    restricted = await post(client, "/v1/api_keys", {"restricted": True, "name": "producer"})
    await log_in(page, restricted["secret"])
    await expect(page.get_by_role("alert")).to_contain_text("is a restricted key")
    await page.screenshot(path=artifacts / "login-refused.png")

    revoked = await post(client, "/v1/api_keys", {})
    assert (await client.delete(f"/v1/api_keys/{revoked['id']}")).status_code == 200
    await log_in(page, revoked["secret"])
    await expect(page.get_by_role("alert")).to_contain_text("revoked")
    # None of them got a session.
    await page.goto("/dashboard/subscriptions")
    await expect(page).to_have_url("/dashboard/login")


async def test_a_forged_form_is_refused_and_changes_nothing(
    context: BrowserContext, client: httpx.AsyncClient, secret_key: str
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    page = await context.new_page()
    await log_in(page, secret_key)
    await page.goto(f"/dashboard/subscriptions/{sub['id']}")
    token = page.locator("form.advance input[name=csrf]")
    for forge in ("input.value = 'not-the-token'", "input.remove()"):
        await token.evaluate(f"input => {forge}")
        async with page.expect_response(lambda r: r.request.method == "POST") as answer:
            await page.get_by_role("button", name="Advance billing period").click()
        assert (await answer.value).status == 403
        await expect(page.get_by_role("alert")).to_contain_text("security token")
        await page.go_back()
        await page.reload()
    unchanged = (await client.get(f"/v1/subscriptions/{sub['id']}")).json()
    assert unchanged["testClock"] is None
    assert unchanged["currentPeriodEnd"] == sub["currentPeriodEnd"]


async def test_log_out_ends_the_session(context: BrowserContext, secret_key: str) -> None:
    page = await context.new_page()
    await log_in(page, secret_key)
    await expect(page).to_have_url("/dashboard/subscriptions")
    cookies = await context.cookies()
    session = next(c for c in cookies if c["name"] == "vinr_session")
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert secret_key not in session["value"]
    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("alert")).to_contain_text("You have logged out")
    # The old cookie, sent again, opens nothing.
    await context.add_cookies([{**session}])  # type: ignore[list-item]
    await page.goto("/dashboard/subscriptions")
    await expect(page).to_have_url("/dashboard/login")


async def test_every_page_fits_a_phone_and_passes_the_accessibility_checks(
    browser: Browser,
    api: str,
    client: httpx.AsyncClient,
    secret_key: str,
    aggregator: Aggregator,
    invoicer: Invoicer,
    artifacts: Path,
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    item = sub["items"]["data"][0]["id"]
    await post(
        client,
        "/v1/webhook_endpoints",
        {
            "url": "http://127.0.0.1:9/a-very-long/webhook/path/that/must/wrap/on/a/phone",
            "enabledEvents": ["*"],
        },
    )
    await reported(client, item, 1234, key="phone-1")
    await aggregator.drain()
    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    await invoicer.tick()
    invoice = (await client.get("/v1/invoices", params={"subscription": sub["id"]})).json()
    event = (await client.get("/v1/events", params={"limit": 1})).json()["data"][0]
    meter = await post(
        client,
        "/v1/billing/meters",
        {
            "displayName": "Stored gigabytes, a name long enough to wrap on a phone",
            "eventName": "gigabytes_stored_per_customer_per_minute",
            "defaultAggregation": {"formula": "max"},
        },
    )
    await post(
        client,
        "/v1/billing/alerts",
        {
            "title": "Storage above one terabyte for any customer",
            "alertType": "usage_threshold",
            "usageThreshold": {"meter": meter["id"], "gte": 1000, "recurrence": "one_time"},
        },
    )
    paths = {
        "subscriptions": "/dashboard/subscriptions",
        "subscription": f"/dashboard/subscriptions/{sub['id']}",
        "customers": "/dashboard/customers",
        "invoices": "/dashboard/invoices",
        "invoice": f"/dashboard/invoices/{invoice['data'][0]['id']}",
        "webhooks": "/dashboard/webhooks",
        "events": "/dashboard/events",
        "event": f"/dashboard/events/{event['id']}",
        "api_keys": "/dashboard/api_keys",
        "dead_letters": "/dashboard/dead_letters",
        "meters": "/dashboard/meters",
        "meter": f"/dashboard/meters/{meter['id']}?customer={sub['customer']}",
        "alerts": "/dashboard/alerts",
    }
    phone = await browser.new_context(
        base_url=api, viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    phone.set_default_timeout(WAIT_MS)
    try:
        page = await phone.new_page()
        await page.goto("/dashboard/login")
        await _check(page, "login", artifacts)
        await page.keyboard.press("Tab")
        assert await page.evaluate("document.activeElement.textContent") == "Skip to content"
        await page.get_by_label("Secret key").fill(secret_key)
        await page.get_by_role("button", name="Log in").click()
        await expect(page).to_have_url("/dashboard/subscriptions")
        for name, path in paths.items():
            await page.goto(path)
            await expect(page.locator("main h1")).to_be_visible()
            await _check(page, name, artifacts)
        # A page's own answer, with a new restricted key shown once.
        await page.goto("/dashboard/api_keys")
        await page.get_by_label("Name").fill("phone producer")
        await page.get_by_role("button", name="Create restricted key").click()
        await expect(page.get_by_label("Key", exact=True)).to_have_value(_restricted_key())
        await _check(page, "api_key_created", artifacts)
    finally:
        await phone.close()


def _restricted_key() -> Any:
    import re

    return re.compile(r"^rk_test_\S{20,}$")


async def _check(page: Page, name: str, artifacts: Path) -> None:
    await page.screenshot(path=artifacts / f"phone-{name}.png", full_page=True)
    width = await page_width(page)
    assert width <= PHONE["width"], f"{name}: the page is {width} px wide on a 390 px phone"
    problems = await accessibility_problems(page)
    assert problems == [], f"{name}: {problems}"


async def test_nothing_is_fetched_from_elsewhere(context: BrowserContext, secret_key: str) -> None:
    """The Dashboard works offline: every request a page makes stays on this server."""
    requested: list[str] = []
    page = await context.new_page()
    page.on("request", lambda r: requested.append(r.url))
    await log_in(page, secret_key)
    await page.goto("/dashboard/events")
    await asyncio.sleep(0)  # let late requests be recorded
    base = context_base(page)
    assert requested and all(url.startswith(base) for url in requested), requested


def context_base(page: Page) -> str:
    url = page.url
    return url[: url.index("/dashboard")]


async def test_the_audit_finds_what_it_looks_for(context: BrowserContext) -> None:
    """The checks above have teeth: a page with each fault gets each complaint."""
    page = await context.new_page()
    await page.set_content(
        "<html><head><title>x</title></head><body><main><h1>a</h1><h1>b</h1>"
        '<input id="q"><button></button><a href="/x"></a><svg role="img"></svg>'
        '<p id="d">one</p><p id="d">two</p>'
        '<p style="color:#bbb;background:#fff">faint</p></main></body></html>'
    )
    problems = " | ".join(await accessibility_problems(page))
    for complaint in (
        "no label",
        "button without a name",
        "link without a name",
        "image without a name",
        "no lang",
        "not exactly one h1",
        "duplicate id: d",
        "contrast",
    ):
        assert complaint in problems, (complaint, problems)
    await page.set_content('<div style="width:600px">wide</div>')
    await page.set_viewport_size(PHONE)
    assert await page_width(page) > PHONE["width"]
