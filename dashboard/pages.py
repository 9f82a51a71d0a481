"""The Dashboard's pages and actions. Each reads and writes through ``domain`` — the same
stores, billing operations and object renderings the control plane answers with — and
renders a template; no SQL here.

An action (POST) answers a redirect to the page it changed (``?done=…`` names a fixed
message), so reloading the page never repeats it; creating a key is the exception: its
answer shows the new key, once, and nothing keeps it.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from dashboard.charts import chart
from dashboard.format import day
from dashboard.http import Answer
from dashboard.views import PAGE_SIZE, Req, render
from domain import accounts, billing, deliveries, meterusage, usage
from domain.clock import subscription_now
from domain.deadletters import REASONS, render_dead_letter
from domain.events import EVENT_TYPES
from domain.meters import BUCKET_S, decimal_text, formula_value
from domain.objects import (
    render_api_key,
    render_charge,
    render_customer,
    render_event,
    render_meter,
    render_webhook_endpoint,
)
from domain.store import customers as customer_store
from domain.store import invoices as invoice_store
from domain.store import meters as meter_store
from domain.store import subscriptions as subscription_store
from domain.store import webhooks as webhook_store
from domain.store.owned import found, page
from domain.store.subscriptions import ITEM_ID_OF_PK
from infra.errors import InvalidRequest

__all__ = ["DONE", "ID", "ROUTES"]

# An object id in a path or form: what every id vinr makes (and a caller may choose) is.
ID = r"[A-Za-z0-9_]{1,128}"
_ID = re.compile(ID)
_INVOICE_STATUSES = ("draft", "open", "paid", "uncollectible", "void")
_RECENT_DELIVERIES = 10
_SUBSCRIPTION_INVOICES = 5
_USAGE_DAYS = 30  # a meter's page shows usage per customer over the last 30 UTC days
_USAGE_CUSTOMERS = 50
_DAY_S = 86_400

DONE = {
    "advanced": "Billing period advanced: the subscription's test clock is now at the end of"
    " its period. The invoice appears below as soon as the invoicer has closed and charged it.",
    "resent": "The event was queued again; the dispatcher sends it within a second.",
    "revoked": "The key was revoked: every API process refuses it within 2 seconds.",
}


def _id(value: str | None, field: str) -> str:
    if value is None or not _ID.fullmatch(value):
        raise InvalidRequest(f"{field} must be an object id (letters, digits, _)", param=field)
    return value


def _after(req: Req) -> str | None:
    value = req.query.get("after")
    return None if value is None else _id(value, "after")


def _done(req: Req) -> str | None:
    return DONE.get(req.query.get("done", ""))


def _next_link(req: Req, listing: dict[str, Any], **keep: str | None) -> str | None:
    """The link to the next (older) page of a list, keeping its filters."""
    if not listing["hasMore"] or not listing["data"]:
        return None
    query = "&".join(f"{k}={v}" for k, v in keep.items() if v is not None)
    return f"{req.path}?{query + '&' if query else ''}after={listing['data'][-1]['id']}"


async def home(req: Req) -> Answer:
    return Answer.redirect("/dashboard/subscriptions")


async def customers(req: Req) -> Answer:
    listing = await page(
        req.services.pool,
        table="customers",
        t=req.t,
        limit=PAGE_SIZE,
        starting_after=_after(req),
        url="/dashboard/customers",
        render=render_customer,
    )
    return render(
        req,
        "customers.html",
        section="/customers",
        customers=listing["data"],
        next_link=_next_link(req, listing),
    )


async def _subscription_page(req: Req, customer: str | None) -> dict[str, Any]:
    return await subscription_store.subscription_page(
        req.services.pool,
        req.t,
        limit=PAGE_SIZE,
        starting_after=_after(req),
        customer=customer,
        url="/dashboard/subscriptions",
    )


async def subscriptions(req: Req) -> Answer:
    customer = req.query.get("customer")
    if customer is not None:
        _id(customer, "customer")
    listing = await _subscription_page(req, customer)
    return render(
        req,
        "subscriptions.html",
        section="/subscriptions",
        subscriptions=listing["data"],
        customer=customer,
        next_link=_next_link(req, listing, customer=customer),
    )


async def _live(req: Req, sub_id: str) -> dict[str, Any]:
    """Everything on the subscription page that changes by itself: each item's usage this
    period and its chart, and the subscription's latest invoices with lines and charges."""
    pool, t = req.services.pool, req.t
    sub = found(
        await subscription_store.load_subscription(pool, t, sub_id),
        what="subscription",
        ident=sub_id,
    )
    frozen = None
    if sub["testClock"] is not None:
        frozen = await subscription_store.owned_clock_time(pool, t.account_id, sub["testClock"])
    now = subscription_now(frozen)
    start, end = sub["currentPeriodStart"], sub["currentPeriodEnd"]
    items: list[dict[str, Any]] = []
    for item in sub["items"]["data"]:
        entry: dict[str, Any] = {"item": item, "price": item["price"], "chart": None}
        if item["price"]["recurring"]["usageType"] == "metered":
            periods = await usage.summaries(pool, t, item["id"])
            current = next((p for p in periods if p["period"]["start"] == start), None)
            earlier = [p for p in periods if p["period"]["start"] < start]
            carry = earlier[0]["totalUsage"] if earlier else 0
            series = await usage.usage_series(
                pool, t, item["id"], start=start, end=end, now=now, carry=carry
            )
            entry["total"] = current["totalUsage"] if current else 0
            entry["chart"] = chart(
                series, days=(day(start), day(start + (end - start) // 2), day(end))
            )
        items.append(entry)
    listing = await invoice_store.invoice_page(
        pool, t, limit=_SUBSCRIPTION_INVOICES, subscription=sub_id, url="/dashboard/invoices"
    )
    invoices = listing["data"]
    charges = {inv["id"]: await _charges(req, inv["id"]) for inv in invoices}
    return {
        "sub": sub,
        "now": now,
        "frozen": frozen,
        "items": items,
        "invoices": invoices,
        "charges": charges,
        "more_invoices": listing["hasMore"],
    }


async def subscription(req: Req) -> Answer:
    live = await _live(req, req.params["id"])
    return render(req, "subscription.html", section="/subscriptions", done=_done(req), **live)


async def subscription_live(req: Req) -> Answer:
    """The self-updating part of the subscription page, polled by ``dashboard.js``."""
    return render(req, "_live.html", **await _live(req, req.params["id"]))


async def advance_period(req: Req) -> Answer:
    """The guide's "Advance billing period": the control plane's test helper, one rule."""
    sub_id = req.params["id"]
    s = req.services
    async with s.pool.acquire() as conn, s.meta.changes(conn) as changes, conn.transaction():
        await billing.advance_period(conn, changes, req.t, sub_id)
    return Answer.redirect(f"/dashboard/subscriptions/{sub_id}?done=advanced")


async def _charges(req: Req, invoice_id: str) -> list[dict[str, Any]]:
    where, args = invoice_store.charge_filter(invoice_id)
    listing = await page(
        req.services.pool,
        table="charges",
        t=req.t,
        limit=100,
        starting_after=None,
        url="/dashboard/invoices",
        render=render_charge,
        where=where,
        args=args,
    )
    return list(reversed(listing["data"]))  # oldest attempt first


async def invoices(req: Req) -> Answer:
    status = req.query.get("status") or None
    if status is not None and status not in _INVOICE_STATUSES:
        raise InvalidRequest(
            f"status must be one of {', '.join(_INVOICE_STATUSES)}", param="status"
        )
    customer = req.query.get("customer") or None
    if customer is not None:
        _id(customer, "customer")
    listing = await invoice_store.invoice_page(
        req.services.pool,
        req.t,
        limit=PAGE_SIZE,
        starting_after=_after(req),
        customer=customer,
        status=status,
        url="/dashboard/invoices",
    )
    return render(
        req,
        "invoices.html",
        section="/invoices",
        invoices=listing["data"],
        status_filter=status,
        statuses=_INVOICE_STATUSES,
        customer=customer,
        next_link=_next_link(req, listing, status=status, customer=customer),
    )


async def invoice(req: Req) -> Answer:
    invoice_id = req.params["id"]
    pool = req.services.pool
    found(
        await invoice_store.owned_invoice(pool, req.t, invoice_id), what="invoice", ident=invoice_id
    )
    rendered = found(
        await invoice_store.load_invoice(pool, invoice_id), what="invoice", ident=invoice_id
    )
    return render(
        req,
        "invoice.html",
        section="/invoices",
        invoice=rendered,
        charges=await _charges(req, invoice_id),
    )


async def webhooks(req: Req) -> Answer:
    listing = await page(
        req.services.pool,
        table=webhook_store.ENDPOINT_LIST.table,
        t=req.t,
        limit=PAGE_SIZE,
        starting_after=_after(req),
        url="/dashboard/webhooks",
        render=render_webhook_endpoint,
        where=webhook_store.ENDPOINT_LIST.where,
        args=webhook_store.ENDPOINT_LIST.args,
    )
    endpoints = [
        {
            "endpoint": e,
            "deliveries": await deliveries.endpoint_deliveries(
                req.services.pool, req.t, e["id"], _RECENT_DELIVERIES
            ),
        }
        for e in listing["data"]
    ]
    return render(
        req,
        "webhooks.html",
        section="/webhooks",
        endpoints=endpoints,
        done=_done(req),
        next_link=_next_link(req, listing),
    )


async def resend(req: Req) -> Answer:
    """Send an event to an endpoint again (the control plane's resend, one rule)."""
    event_id = _id(req.form.get("event"), "event")
    endpoint_id = _id(req.form.get("endpoint"), "endpoint")
    back = "/dashboard/webhooks"
    if req.form.get("back") == "event":
        back = f"/dashboard/events/{event_id}"
    async with req.services.pool.acquire() as conn, conn.transaction():
        await deliveries.resend(conn, req.t, event_id, endpoint_id)
    return Answer.redirect(f"{back}?done=resent")


async def events(req: Req) -> Answer:
    event_type = req.query.get("type") or None
    if event_type is not None and event_type not in EVENT_TYPES:
        raise InvalidRequest("type must be one of the event types listed", param="type")
    listing_of = webhook_store.event_list(event_type)
    listing = await page(
        req.services.pool,
        table=listing_of.table,
        t=req.t,
        limit=PAGE_SIZE,
        starting_after=_after(req),
        url="/dashboard/events",
        render=render_event,
        where=listing_of.where,
        args=listing_of.args,
    )
    return render(
        req,
        "events.html",
        section="/events",
        events=listing["data"],
        event_type=event_type,
        event_types=sorted(EVENT_TYPES),
        next_link=_next_link(req, listing, type=event_type),
    )


async def event(req: Req) -> Answer:
    event_id = req.params["id"]
    pool = req.services.pool
    row = found(await webhook_store.event(pool, req.t, event_id), what="event", ident=event_id)
    rendered = render_event(row)
    sent = await deliveries.event_deliveries(pool, event_id, limit=100)
    return render(
        req,
        "event.html",
        section="/events",
        event=rendered,
        data=orjson.dumps(rendered["data"], option=orjson.OPT_INDENT_2).decode(),
        deliveries=sent["data"],
        done=_done(req),
    )


async def _key_page(req: Req, *, created: dict[str, Any] | None = None) -> Answer:
    listing = await accounts.key_page(
        req.services.pool,
        req.t,
        limit=PAGE_SIZE,
        starting_after=None if created else _after(req),
        render=render_api_key,
    )
    return render(
        req,
        "api_keys.html",
        section="/api_keys",
        keys=listing["data"],
        created=created,
        max_name=accounts.MAX_NAME_LENGTH,
        done=None if created else _done(req),
        next_link=None if created else _next_link(req, listing),
    )


async def api_keys(req: Req) -> Answer:
    return await _key_page(req)


async def create_key(req: Req) -> Answer:
    """A restricted key for a producer service (``usage_records: write``): shown in this
    answer only."""
    name = (req.form.get("name") or "").strip() or None
    async with req.services.pool.acquire() as conn:
        new = await accounts.create_key(
            conn, req.t.account_id, livemode=req.t.livemode, restricted=True, name=name
        )
    return await _key_page(req, created=render_api_key(new.key, secret=new.secret))


async def revoke_key(req: Req) -> Answer:
    key_id = req.params["id"]
    if not key_id.startswith("key_"):
        raise InvalidRequest("name the key by its id (key_…)", param="id")
    async with req.services.pool.acquire() as conn:
        await accounts.revoke_key(conn, key_id, scope=req.t, keep_one=True)
    return Answer.redirect("/dashboard/api_keys?done=revoked")


async def dead_letters(req: Req) -> Answer:
    reason = req.query.get("reason") or None
    where, args = "", []
    if reason is not None:
        if reason not in REASONS:
            raise InvalidRequest(f"reason must be one of: {', '.join(REASONS)}", param="reason")
        where, args = " AND t.reason = $3", [reason]
    listing = await page(
        req.services.pool,
        table="usage_dead_letters",
        t=req.t,
        limit=PAGE_SIZE,
        starting_after=_after(req),
        url="/dashboard/dead_letters",
        render=lambda row: render_dead_letter(row, row["item_id"]),
        where=where,
        args=args,
        select=f"t.*, {ITEM_ID_OF_PK}",
    )
    return render(
        req,
        "dead_letters.html",
        section="/dead_letters",
        letters=listing["data"],
        reason=reason,
        reasons=REASONS,
        next_link=_next_link(req, listing, reason=reason),
    )


async def meters(req: Req) -> Answer:
    listing = await page(
        req.services.pool,
        table="meters",
        t=req.t,
        limit=PAGE_SIZE,
        starting_after=_after(req),
        url="/dashboard/meters",
        render=render_meter,
    )
    return render(
        req,
        "meters.html",
        section="/meters",
        meters=listing["data"],
        next_link=_next_link(req, listing),
    )


async def meter(req: Req) -> Answer:
    """A meter, its usage per customer over the last 30 UTC days (from the minute buckets),
    and one customer's usage per day when ``?customer=`` names one."""
    pool, t = req.services.pool, req.t
    meter_id = req.params["id"]
    row = found(await meter_store.meter_by_id(pool, t, meter_id), what="meter", ident=meter_id)
    formula = row["formula"]
    now = subscription_now(None)
    end = now - now % BUCKET_S + BUCKET_S  # through the current minute
    start = now - now % _DAY_S - (_USAGE_DAYS - 1) * _DAY_S
    customers = [
        {"id": cid, "value": decimal_text(formula_value(formula, stats)), "count": stats.events}
        for cid, stats in await meterusage.customers_usage(
            pool, row["pk"], start, end, limit=_USAGE_CUSTOMERS
        )
    ]
    chosen = req.query.get("customer")
    days: list[dict[str, Any]] = []
    if chosen is not None:
        _id(chosen, "customer")
        customer_pk = found(
            await customer_store.customer_pk(pool, t, chosen),
            what="customer",
            ident=chosen,
            param="customer",
        )
        bounds = [(d, min(d + _DAY_S, end)) for d in range(start, end, _DAY_S)]
        stats = await meterusage.range_stats(
            pool, [meterusage.RangeAsk(row["pk"], customer_pk, a, b) for a, b in bounds]
        )
        values = [formula_value(formula, s) for s in stats]
        top = max(values, default=0) or 1
        days = [
            {
                "start": a,
                "value": decimal_text(v),
                "count": s.events,
                "share": round(float(v) / float(top) * 100, 1),
            }
            for (a, _), v, s in zip(bounds, values, stats, strict=True)
        ]
        days.reverse()  # newest first, like every list of the Dashboard
    alerts = await meter_store.alert_page(
        pool, t, limit=PAGE_SIZE, starting_after=None, meter=meter_id
    )
    return render(
        req,
        "meter.html",
        section="/meters",
        meter=render_meter(row),
        alerts=alerts["data"],
        start=start,
        customers=customers,
        chosen=chosen,
        days=days,
    )


async def alerts(req: Req) -> Answer:
    listing = await meter_store.alert_page(
        req.services.pool, req.t, limit=PAGE_SIZE, starting_after=_after(req), meter=None
    )
    return render(
        req,
        "alerts.html",
        section="/alerts",
        alerts=listing["data"],
        next_link=_next_link(req, listing),
    )


# (method, path pattern, handler): every route below needs a logged-in session; the
# login, logout and static routes are the app's own.
ROUTES = [
    ("GET", r"/dashboard/?", home),
    ("GET", r"/dashboard/customers", customers),
    ("GET", r"/dashboard/subscriptions", subscriptions),
    ("GET", rf"/dashboard/subscriptions/(?P<id>{ID})", subscription),
    ("GET", rf"/dashboard/subscriptions/(?P<id>{ID})/live", subscription_live),
    ("POST", rf"/dashboard/subscriptions/(?P<id>{ID})/advance_period", advance_period),
    ("GET", r"/dashboard/invoices", invoices),
    ("GET", rf"/dashboard/invoices/(?P<id>{ID})", invoice),
    ("GET", r"/dashboard/webhooks", webhooks),
    ("POST", r"/dashboard/webhooks/resend", resend),
    ("GET", r"/dashboard/events", events),
    ("GET", rf"/dashboard/events/(?P<id>{ID})", event),
    ("GET", r"/dashboard/api_keys", api_keys),
    ("POST", r"/dashboard/api_keys", create_key),
    ("POST", rf"/dashboard/api_keys/(?P<id>{ID})/revoke", revoke_key),
    ("GET", r"/dashboard/dead_letters", dead_letters),
    ("GET", r"/dashboard/meters", meters),
    ("GET", rf"/dashboard/meters/(?P<id>{ID})", meter),
    ("GET", r"/dashboard/alerts", alerts),
]
