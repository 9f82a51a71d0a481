"""Read side of billing: usage summaries, invoices, charges (events and webhooks: webhooks.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query, Request

from control.common import Json, Limit, StartingAfter, services, tenant
from control.routing import api_router, error_responses
from control.schemas import (
    ChargeList,
    Invoice,
    InvoiceList,
    UpcomingInvoice,
    UsageRecordSummaryList,
)
from domain import usage
from domain.billing import InvoiceRules, collect_invoices, upcoming_invoice
from domain.objects import render_charge
from domain.store import invoices as store
from domain.store.owned import found, page
from infra.errors import Conflict, InvalidRequest

__all__ = ["router"]

router = api_router("billing")


@router.get(
    "/v1/usage_records/summaries",
    response_model=UsageRecordSummaryList,
    responses=error_responses(404),
)
async def usage_summaries(
    request: Request,
    subscription_item: Annotated[str, Query(alias="subscriptionItem", min_length=1)],
    limit: Limit = 10,
) -> Json:
    """Newest period first: the current (running) period, then closed ones."""
    t, s = tenant(request), services(request)
    data = await usage.summaries(s.pool, t, subscription_item)
    return Json(
        {
            "object": "list",
            "url": "/v1/usage_records/summaries",
            "hasMore": len(data) > limit,
            "data": data[:limit],
        }
    )


@router.get("/v1/invoices/upcoming", response_model=UpcomingInvoice, responses=error_responses(404))
async def upcoming(
    request: Request,
    subscription: Annotated[str, Query(min_length=1, max_length=255)],
) -> Json:
    """The invoice the subscription's current period would produce now: metered lines for
    the period so far (usage records and meters), licensed lines for the next period. Built
    by the period close's own code; not stored (``id`` null), no events."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn:
        invoice = await upcoming_invoice(
            conn, t, subscription, InvoiceRules.from_settings(s.settings)
        )
    return Json(invoice)


@router.get("/v1/invoices/{invoice_id}", response_model=Invoice)
async def get_invoice(invoice_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    found(await store.owned_invoice(s.pool, t, invoice_id), what="invoice", ident=invoice_id)
    return Json((await store.load_invoices(s.pool, [invoice_id]))[invoice_id])


InvoiceStatus = Literal["draft", "open", "paid", "uncollectible", "void"]


@router.get("/v1/invoices", response_model=InvoiceList)
async def list_invoices(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    subscription: str | None = None,
    customer: str | None = None,
    status: InvoiceStatus | None = None,
) -> Json:
    """Newest first; filters combine (``subscription``, ``customer``, ``status``)."""
    t, s = tenant(request), services(request)
    listing = await store.invoice_page(
        s.pool,
        t,
        limit=limit,
        starting_after=starting_after,
        subscription=subscription,
        customer=customer,
        status=status,
    )
    return Json(listing)


@router.post("/v1/invoices/{invoice_id}/pay", response_model=Invoice)
async def pay_invoice(invoice_id: str, request: Request) -> Json:
    """Attempt the charge now, outside the dunning schedule. Answers the invoice: ``paid``,
    or still ``open`` with one more ``attemptCount`` when the card was declined."""
    t, s = tenant(request), services(request)
    row = found(await store.owned_invoice(s.pool, t, invoice_id), what="invoice", ident=invoice_id)
    if row["status"] != "open":
        raise InvalidRequest(
            f"invoice {invoice_id} is {row['status']}; only open invoices can be paid",
            code="invoice_not_open",
        )
    async with s.pool.acquire() as conn, s.meta.changes(conn) as changes:
        attempted = await collect_invoices(
            conn, [invoice_id], InvoiceRules.from_settings(s.settings), manual=True
        )
        if not attempted:
            raise Conflict(
                f"invoice {invoice_id} is being charged right now; retry in a moment",
                code="invoice_payment_in_progress",
            )
        changes.took(a.subscription_id for a in attempted if a.subscription_changed)
    return Json((await store.load_invoices(s.pool, [invoice_id]))[invoice_id])


@router.get("/v1/charges", response_model=ChargeList)
async def list_charges(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    invoice: str | None = None,
) -> Json:
    t, s = tenant(request), services(request)
    where, args = store.charge_filter(invoice)
    return Json(
        await page(
            s.pool,
            table="charges",
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/charges",
            render=render_charge,
            where=where,
            args=args,
        )
    )
