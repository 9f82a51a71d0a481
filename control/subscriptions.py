"""Subscriptions, their items, and the sandbox's period and clock helpers."""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from fastapi import Request
from pydantic import Field

from control.common import (
    ApiModel,
    Json,
    Limit,
    Metadata,
    StartingAfter,
    Text,
    services,
    tenant,
)
from control.routing import api_router, error_responses
from control.schemas import Subscription, SubscriptionList, TestClock
from domain import billing
from domain.billing import (
    InvoiceRules,
    collect_invoices,
    finalize_invoices,
    move_clock,
    open_first_invoice,
    require_sandbox,
)
from domain.clock import subscription_now
from domain.events import emit_event
from domain.itemmeta import Changes
from domain.objects import render_test_clock
from domain.periods import period_at
from domain.prorations import Holding, queue_prorations
from domain.store import catalog, customers
from domain.store import subscriptions as store
from domain.store.owned import found
from domain.tenant import Tenant
from infra.errors import Conflict, InvalidRequest
from infra.ids import new_id

__all__ = ["load_subscription", "router"]

router = api_router("subscriptions")

_ITEM_ID = r"^si_[A-Za-z0-9_]{1,64}$"


class ItemIn(ApiModel):
    price: Text = Field(min_length=1, max_length=255)
    quantity: int | None = Field(default=None, ge=0, le=10**9)
    id: Text | None = Field(default=None, pattern=_ITEM_ID)


class SubscriptionCreate(ApiModel):
    customer: Text = Field(min_length=1, max_length=255)
    items: list[ItemIn] = Field(min_length=1, max_length=20)
    testClock: Text | None = Field(default=None, max_length=255)
    cancelAtPeriodEnd: bool = False
    metadata: Metadata = Field(default_factory=dict)


class ItemChange(ApiModel):
    """An existing item (``id``) to change, or, without ``id``, a new item to add."""

    id: Text | None = Field(default=None, pattern=_ITEM_ID)
    price: Text | None = Field(default=None, min_length=1, max_length=255)
    quantity: int | None = Field(default=None, ge=0, le=10**9)


class SubscriptionUpdate(ApiModel):
    cancelAtPeriodEnd: bool | None = None
    metadata: Metadata | None = None
    items: list[ItemChange] | None = Field(default=None, min_length=1, max_length=20)
    prorationBehavior: Literal["create_prorations", "none"] = "create_prorations"


class ClockCreate(ApiModel):
    frozenTime: int = Field(ge=0, le=2**40)
    name: Text | None = Field(default=None, max_length=300)


class ClockAdvance(ApiModel):
    frozenTime: int = Field(ge=0, le=2**40)


async def load_subscription(
    db: asyncpg.Pool | asyncpg.Connection[Any], t: Tenant, sub_id: str
) -> dict[str, Any]:
    return found(await store.load_subscription(db, t, sub_id), what="subscription", ident=sub_id)


async def _clock_time(conn: asyncpg.Connection[Any], t: Tenant, clock_id: str | None) -> int | None:
    if clock_id is None:
        return None
    if t.livemode:
        raise InvalidRequest(
            "test clocks exist in the sandbox only (sk_test_ keys)", param="testClock"
        )
    frozen = await store.owned_clock_time(conn, t.account_id, clock_id)
    if frozen is None:
        raise InvalidRequest(
            f"no such test clock: '{clock_id}'", param="testClock", code="resource_missing"
        )
    return frozen


@router.post("/v1/subscriptions", response_model=Subscription)
async def create_subscription(body: SubscriptionCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, s.meta.changes(conn) as changes:
        async with conn.transaction():
            customer_pk = await customers.customer_pk(conn, t, body.customer)
            if customer_pk is None:
                raise InvalidRequest(
                    f"no such customer: '{body.customer}'",
                    param="customer",
                    code="resource_missing",
                )
            prices: list[asyncpg.Record] = []
            quantities: list[int | None] = []
            for i, item in enumerate(body.items):
                price = await catalog.tenant_price(conn, t, item.price)
                if price is None:
                    raise InvalidRequest(
                        f"no such price: '{item.price}'",
                        param=f"items[{i}].price",
                        code="resource_missing",
                    )
                quantities.append(_new_item_quantity(price, item.quantity, i))
                first = prices[0] if prices else price
                if (price["currency"], price["interval"], price["interval_count"]) != (
                    first["currency"],
                    first["interval"],
                    first["interval_count"],
                ):
                    raise InvalidRequest(
                        "all items of a subscription need the same currency and billing interval",
                        param=f"items[{i}].price",
                    )
                prices.append(price)
            frozen = await _clock_time(conn, t, body.testClock)
            anchor = subscription_now(frozen)
            first = prices[0]
            period = period_at(anchor, first["interval"], first["interval_count"], 0)
            sub_id = new_id("sub")
            await store.insert_subscription(
                conn,
                t,
                sub_id,
                customer_pk=customer_pk,
                test_clock_id=body.testClock,
                first_price=first,
                anchor=anchor,
                period=period,
                cancel_at_period_end=body.cancelAtPeriodEnd,
                metadata=body.metadata,
            )
            for i, (item, price, quantity) in enumerate(
                zip(body.items, prices, quantities, strict=True)
            ):
                try:
                    async with conn.transaction():
                        await store.insert_item(
                            conn, t, item.id or new_id("si"), sub_id, price["id"], quantity, anchor
                        )
                except asyncpg.UniqueViolationError:
                    raise Conflict(
                        f"a subscription item with id '{item.id}' already exists",
                        param=f"items[{i}].id",
                        code="resource_already_exists",
                    ) from None
            await emit_event(
                conn,
                t.account_id,
                t.livemode,
                "customer.subscription.created",
                await load_subscription(conn, t, sub_id),
            )
            first_invoice = await open_first_invoice(conn, sub_id)
            await changes.bump([sub_id])
        # Licensed items are paid in advance: the first invoice is charged right away.
        if first_invoice is not None and (
            finalized := await finalize_invoices(conn, [first_invoice])
        ):
            changes.took(sub for _, sub in finalized)
            attempts = await collect_invoices(
                conn, [first_invoice], InvoiceRules.from_settings(s.settings)
            )
            changes.took(a.subscription_id for a in attempts if a.subscription_changed)
        rendered = await load_subscription(conn, t, sub_id)
    return Json(rendered)


@router.get("/v1/subscriptions/{sub_id}", response_model=Subscription)
async def get_subscription(sub_id: str, request: Request) -> Json:
    return Json(await load_subscription(services(request).pool, tenant(request), sub_id))


@router.get("/v1/subscriptions", response_model=SubscriptionList)
async def list_subscriptions(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    customer: str | None = None,
) -> Json:
    t, s = tenant(request), services(request)
    listing = await store.subscription_page(
        s.pool, t, limit=limit, starting_after=starting_after, customer=customer
    )
    return Json(listing)


async def _locked(conn: asyncpg.Connection[Any], t: Tenant, sub_id: str) -> asyncpg.Record:
    return found(await store.lock_subscription(conn, t, sub_id), what="subscription", ident=sub_id)


async def _changed(
    conn: asyncpg.Connection[Any], changes: Changes, t: Tenant, sub_id: str
) -> dict[str, Any]:
    await changes.bump([sub_id])
    rendered = await load_subscription(conn, t, sub_id)
    await emit_event(conn, t.account_id, t.livemode, "customer.subscription.updated", rendered)
    return rendered


@router.post("/v1/subscriptions/{sub_id}", response_model=Subscription)
async def update_subscription(sub_id: str, body: SubscriptionUpdate, request: Request) -> Json:
    """Change ``cancelAtPeriodEnd``, ``metadata`` and items. A metered item's new price
    applies to usage from now on (the period is billed in price segments); a licensed
    item's new price or quantity is prorated on the next invoice (``prorationBehavior``)."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, s.meta.changes(conn) as changes, conn.transaction():
        sub = await _locked(conn, t, sub_id)
        if sub["status"] == "canceled":
            raise InvalidRequest(f"subscription {sub_id} is canceled and can't be updated")
        await store.update_settings(conn, sub_id, body.cancelAtPeriodEnd, body.metadata)
        if body.items:
            await _change_items(
                conn, t, sub, body.items, prorate=body.prorationBehavior == "create_prorations"
            )
        rendered = await _changed(conn, changes, t, sub_id)
    return Json(rendered)


def _check_quantity(usage_type: str, quantity: int | None, i: int) -> None:
    """Metered prices take no quantity: usage records drive the bill."""
    if usage_type == "metered" and quantity is not None:
        raise InvalidRequest(
            "metered prices take no quantity: usage records drive the bill",
            param=f"items[{i}].quantity",
        )


def _new_item_quantity(price: asyncpg.Record, quantity: int | None, i: int) -> int | None:
    """A new item's quantity: none for a metered price, 1 unless given for a licensed one."""
    _check_quantity(price["usage_type"], quantity, i)
    if price["usage_type"] == "metered":
        return None
    return 1 if quantity is None else quantity


async def _price_for(
    conn: asyncpg.Connection[Any], t: Tenant, sub: asyncpg.Record, price_id: str, param: str
) -> asyncpg.Record:
    price = await catalog.tenant_price(conn, t, price_id)
    if price is None:
        raise InvalidRequest(f"no such price: '{price_id}'", param=param, code="resource_missing")
    if (price["currency"], price["interval"], price["interval_count"]) != (
        sub["currency"],
        sub["interval"],
        sub["interval_count"],
    ):
        raise InvalidRequest(
            f"price {price_id} bills {price['currency']} every {price['interval_count']}"
            f" {price['interval']}(s); this subscription bills {sub['currency']} every"
            f" {sub['interval_count']} {sub['interval']}(s)",
            param=param,
        )
    return price


async def _change_items(
    conn: asyncpg.Connection[Any],
    t: Tenant,
    sub: asyncpg.Record,
    changes: list[ItemChange],
    *,
    prorate: bool,
) -> None:
    """Apply item changes at the subscription's "now", clamped to its current period."""
    frozen = await _clock_time(conn, t, sub["test_clock_id"])
    at = min(max(subscription_now(frozen), sub["current_period_start"]), sub["current_period_end"])
    named = [c.id for c in changes if c.id is not None]
    if len(named) != len(set(named)):
        raise InvalidRequest("each subscription item may appear once in items", param="items")
    for i, change in enumerate(changes):
        if change.id is None:
            await _add_item(conn, t, sub, change, i, at, prorate=prorate)
            continue
        item = await store.lock_item(conn, sub["id"], change.id)
        if item is None:
            raise InvalidRequest(
                f"subscription {sub['id']} has no item '{change.id}'",
                param=f"items[{i}].id",
                code="resource_missing",
            )
        old_price = await catalog.price(conn, item["price_id"])
        if old_price is None:  # a foreign key: an item's price is never missing
            raise RuntimeError(f"price {item['price_id']} of item {change.id} is missing")
        price = (
            old_price
            if change.price is None
            else await _price_for(conn, t, sub, change.price, f"items[{i}].price")
        )
        if price["usage_type"] != item["usage_type"]:
            raise InvalidRequest(
                f"item {change.id} has a {item['usage_type']} price; its new price must be"
                f" {item['usage_type']} too (add a new item for a {price['usage_type']} price)",
                param=f"items[{i}].price",
            )
        _check_quantity(item["usage_type"], change.quantity, i)
        quantity = item["quantity"] if change.quantity is None else change.quantity
        if price["id"] == item["price_id"] and quantity == item["quantity"]:
            continue
        if price["id"] != item["price_id"]:
            await store.record_price_change(conn, item["pk"], at, item["price_id"], price["id"])
        if item["usage_type"] == "licensed" and prorate:
            await queue_prorations(
                conn,
                sub,
                item["pk"],
                Holding(old_price, item["quantity"] or 0),
                Holding(price, quantity or 0),
                at,
            )
        await store.update_item(conn, item["pk"], price["id"], quantity)


async def _add_item(
    conn: asyncpg.Connection[Any],
    t: Tenant,
    sub: asyncpg.Record,
    change: ItemChange,
    i: int,
    at: int,
    *,
    prorate: bool,
) -> None:
    if change.price is None:
        raise InvalidRequest(
            "a new item needs a price (or give the id of an item to change)",
            param=f"items[{i}].price",
            code="parameter_missing",
        )
    price = await _price_for(conn, t, sub, change.price, f"items[{i}].price")
    quantity = _new_item_quantity(price, change.quantity, i)
    item_pk = await store.insert_item(conn, t, new_id("si"), sub["id"], price["id"], quantity, at)
    if quantity is not None and prorate:
        await queue_prorations(conn, sub, item_pk, None, Holding(price, quantity), at)


@router.delete("/v1/subscriptions/{sub_id}", response_model=Subscription)
async def cancel_subscription(sub_id: str, request: Request) -> Json:
    """Cancel now; the invoicer bills the usage so far on a final invoice."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, s.meta.changes(conn) as changes, conn.transaction():
        sub = await _locked(conn, t, sub_id)
        if sub["status"] == "canceled":
            raise InvalidRequest(f"subscription {sub_id} is already canceled")
        frozen = await _clock_time(conn, t, sub["test_clock_id"])
        now = max(subscription_now(frozen), sub["current_period_start"])
        await store.cancel(changes, sub_id, now)
        rendered = await load_subscription(conn, t, sub_id)
        await emit_event(conn, t.account_id, t.livemode, "customer.subscription.deleted", rendered)
    return Json(rendered)


@router.post("/v1/test_helpers/subscriptions/{sub_id}/advance_period", response_model=Subscription)
async def advance_period(sub_id: str, request: Request) -> Json:
    """Move the subscription's clock to the end of its current period (creating a test clock
    for it when it has none); the invoicer then closes and invoices the period."""
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, s.meta.changes(conn) as changes, conn.transaction():
        await billing.advance_period(conn, changes, t, sub_id)
        rendered = await load_subscription(conn, t, sub_id)
    return Json(rendered)


@router.post(
    "/v1/test_helpers/test_clocks", response_model=TestClock, responses=error_responses(404)
)
async def create_clock(body: ClockCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    require_sandbox(t)
    row = await store.insert_clock(
        s.pool, new_id("clock"), t.account_id, body.name, body.frozenTime, subscription_now(None)
    )
    return Json(render_test_clock(row))


@router.get("/v1/test_helpers/test_clocks/{clock_id}", response_model=TestClock)
async def get_clock(clock_id: str, request: Request) -> Json:
    t, s = tenant(request), services(request)
    require_sandbox(t)
    row = found(
        await store.owned_clock(s.pool, t.account_id, clock_id), what="test clock", ident=clock_id
    )
    return Json(render_test_clock(row))


@router.post("/v1/test_helpers/test_clocks/{clock_id}/advance", response_model=TestClock)
async def advance_clock(clock_id: str, body: ClockAdvance, request: Request) -> Json:
    t, s = tenant(request), services(request)
    require_sandbox(t)
    async with s.pool.acquire() as conn, s.meta.changes(conn) as changes, conn.transaction():
        row = found(
            await store.owned_clock(conn, t.account_id, clock_id, lock=True),
            what="test clock",
            ident=clock_id,
        )
        if body.frozenTime <= row["frozen_time"]:
            raise InvalidRequest(
                f"frozenTime must be after the clock's current time {row['frozen_time']}",
                param="frozenTime",
            )
        await move_clock(conn, changes, t, clock_id, body.frozenTime)
        row = await store.clock(conn, clock_id)
    return Json(render_test_clock(row))
