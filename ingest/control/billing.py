"""Read side of billing: usage summaries, invoices, charges, events; webhook endpoints."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from pydantic import Field, HttpUrl

from aggregator.fold import WindowState, billable_quantity
from ingest.control.common import (
    ApiModel,
    Json,
    StartingAfter,
    fetch_or_404,
    page,
    services,
    tenant,
)
from invoicer.billing import InvoiceRules, collect, load_invoice
from vinr.clock import now_s
from vinr.errors import InvalidRequest, NotFound
from vinr.events import EVENT_TYPES
from vinr.ids import derived_id, new_id, new_secret
from vinr.objects import render_charge, render_event, render_webhook_endpoint

__all__ = ["router"]

router = APIRouter(tags=["billing"])


@router.get("/v1/usage_records/summaries")
async def usage_summaries(
    request: Request, subscription_item: str = Query(alias="subscriptionItem"), limit: int = 10,
) -> Json:
    """Newest period first: the current (running) period, then closed ones."""
    t, s = tenant(request), services(request)
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    item = await fetch_or_404(
        s.pool, "SELECT si.pk, si.id, p.aggregate_usage, p.usage_type, s.current_period_start,"
        " s.current_period_end, s.status, s.ended_at FROM subscription_items si"
        " JOIN prices p ON p.id = si.price_id JOIN subscriptions s ON s.id = si.subscription_id"
        " WHERE si.account_id = $1 AND si.livemode = $2 AND si.id = $3",
        t.account_id, t.livemode, subscription_item, what="subscription item",
        ident=subscription_item, param="subscriptionItem")
    windows = await s.pool.fetch(
        "SELECT * FROM usage_windows WHERE item_pk = $1 ORDER BY period_start", item["pk"])
    periods: dict[int, tuple[int, WindowState | None, str | None]] = {}
    for w in windows:
        state: WindowState | None = WindowState(int(w["total"]), int(w["max"]), w["last_ts"],
                            int(w["last_quantity"]), w["records"])
        periods[w["period_start"]] = (w["period_end"], state, w["invoice_id"])
    if item["status"] != "canceled" and item["current_period_start"] not in periods:
        periods[item["current_period_start"]] = (item["current_period_end"], None, None)
    invoices = {r["period_start"]: r["id"] for r in await s.pool.fetch(
        "SELECT l.period_start, i.id FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id"
        " WHERE l.item_pk = $1", item["pk"])}
    data: list[dict[str, Any]] = []
    carry = 0
    for start in sorted(periods):
        end, state, invoice_id = periods[start]
        total = billable_quantity(item["aggregate_usage"], state, carry)
        if state is not None and state.last_ts is not None:
            carry = state.last_quantity
        data.append({
            "id": derived_id("sis", str(item["pk"]), str(start)),
            "object": "usage_record_summary", "livemode": t.livemode,
            "subscriptionItem": item["id"], "totalUsage": total,
            "period": {"start": start, "end": end},
            "invoice": invoice_id or invoices.get(start),
        })
    data.reverse()
    return Json({"object": "list", "url": "/v1/usage_records/summaries",
                 "hasMore": len(data) > limit, "data": data[:limit]})


@router.get("/v1/invoices/{invoice_id}")
async def get_invoice(invoice_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    invoice = await load_invoice(s.pool, invoice_id)
    if invoice is None or (await s.pool.fetchval(
            "SELECT account_id = $2 AND livemode = $3 FROM invoices WHERE id = $1",
            invoice_id, t.account_id, t.livemode)) is not True:
        raise NotFound(f"no such invoice: '{invoice_id}'", param="id")
    return Json(invoice)


@router.get("/v1/invoices")
async def list_invoices(
    request: Request, limit: int = 10, starting_after: StartingAfter = None,
    subscription: str | None = None, customer: str | None = None, status: str | None = None,
) -> Json:
    t, s = tenant(request), services(request)
    where, args = "", []
    if subscription is not None:
        args.append(subscription)
        where += f" AND t.subscription_id = ${len(args) + 2}"
    if customer is not None:
        args.append(customer)
        where += (f" AND t.customer_pk = (SELECT pk FROM customers WHERE account_id = $1"
                  f" AND livemode = $2 AND id = ${len(args) + 2})")
    if status is not None:
        args.append(status)
        where += f" AND t.status = ${len(args) + 2}"
    listing = await page(s.pool, table="invoices", t=t, limit=limit,
                         starting_after=starting_after, url="/v1/invoices",
                         render=lambda r: {"id": r["id"]}, where=where, args=args)
    listing["data"] = [await load_invoice(s.pool, r["id"]) for r in listing["data"]]
    return Json(listing)


@router.post("/v1/invoices/{invoice_id}/pay")
async def pay_invoice(invoice_id: str, request: Request) -> Json:
    """Retry the charge now, outside the dunning schedule."""
    t, s = tenant(request), services(request)
    row = await fetch_or_404(
        s.pool, "SELECT status FROM invoices WHERE id = $1 AND account_id = $2 AND livemode = $3",
        invoice_id, t.account_id, t.livemode, what="invoice", ident=invoice_id)
    if row["status"] != "open":
        raise InvalidRequest(f"invoice {invoice_id} is {row['status']}; only open invoices can"
                             " be paid", code="invoice_not_open")
    async with s.pool.acquire() as conn:
        await collect(conn, invoice_id, InvoiceRules.from_settings(s.settings), manual=True)
    return Json(await load_invoice(s.pool, invoice_id))


@router.get("/v1/charges")
async def list_charges(
    request: Request, limit: int = 10, starting_after: StartingAfter = None,
    invoice: str | None = None,
) -> Json:
    t, s = tenant(request), services(request)
    where, args = ("", []) if invoice is None else (" AND t.invoice_id = $3", [invoice])
    return Json(await page(s.pool, table="charges", t=t, limit=limit,
                           starting_after=starting_after, url="/v1/charges",
                           render=render_charge, where=where, args=args))


@router.get("/v1/events/{event_id}")
async def get_event(event_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    row = await fetch_or_404(
        s.pool, "SELECT * FROM events WHERE id = $1 AND account_id = $2 AND livemode = $3",
        event_id, t.account_id, t.livemode, what="event", ident=event_id)
    return Json(render_event(row))


@router.get("/v1/events")
async def list_events(
    request: Request, limit: int = 10, starting_after: StartingAfter = None,
    type: str | None = None,
) -> Json:
    t, s = tenant(request), services(request)
    where, args = ("", []) if type is None else (" AND t.type = $3", [type])
    return Json(await page(s.pool, table="events", t=t, limit=limit,
                           starting_after=starting_after, url="/v1/events", render=render_event,
                           where=where, args=args))


class EndpointCreate(ApiModel):
    url: HttpUrl
    enabledEvents: list[str] = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)


@router.post("/v1/webhook_endpoints")
async def create_endpoint(body: EndpointCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    for i, name in enumerate(body.enabledEvents):
        if name != "*" and name not in EVENT_TYPES:
            raise InvalidRequest(f"unknown event type '{name}'; use '*' or one of: "
                                 + ", ".join(sorted(EVENT_TYPES)), param=f"enabledEvents[{i}]")
    row = await s.pool.fetchrow(
        "INSERT INTO webhook_endpoints (id, account_id, livemode, url, enabled_events, secret,"
        " description, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        new_id("we"), t.account_id, t.livemode, str(body.url), body.enabledEvents,
        new_secret("whsec"), body.description, now_s())
    return Json(render_webhook_endpoint(row, with_secret=True))


@router.get("/v1/webhook_endpoints")
async def list_endpoints(
    request: Request, limit: int = 10, starting_after: StartingAfter = None,
) -> Json:
    t, s = tenant(request), services(request)
    return Json(await page(s.pool, table="webhook_endpoints", t=t, limit=limit,
                           starting_after=starting_after, url="/v1/webhook_endpoints",
                           render=render_webhook_endpoint))
