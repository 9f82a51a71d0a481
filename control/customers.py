"""Customers and their sandbox payment methods."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from pydantic import Field

from control.common import (
    ApiModel,
    Json,
    StartingAfter,
    fetch_or_404,
    page,
    services,
    tenant,
)
from domain.accounts import Tenant
from domain.clock import now_s
from domain.events import emit_event
from domain.objects import render_customer, render_payment_method
from domain.payments import known_methods, resolve_test_method
from infra.errors import Conflict, InvalidRequest
from infra.ids import new_id

__all__ = ["router"]

router = APIRouter(tags=["customers"])

_ID_PATTERN = r"^cust_[A-Za-z0-9_]{1,64}$"


class CustomerCreate(ApiModel):
    id: str | None = Field(default=None, pattern=_ID_PATTERN)
    name: str | None = Field(default=None, max_length=500)
    email: str | None = Field(default=None, max_length=500)
    paymentMethod: str | None = Field(default=None, max_length=64)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=50)


class CustomerUpdate(ApiModel):
    name: str | None = Field(default=None, max_length=500)
    email: str | None = Field(default=None, max_length=500)
    paymentMethod: str | None = Field(default=None, max_length=64)
    metadata: dict[str, str] | None = Field(default=None, max_length=50)


async def _attach(conn: asyncpg.Connection[Any], t: Tenant, customer_pk: int, value: str) -> str:
    method = resolve_test_method(value)
    if method is None:
        raise InvalidRequest(
            f"unknown payment method '{value}': in the sandbox use one of "
            + ", ".join(known_methods())
            + " or their test card numbers",
            param="paymentMethod",
        )
    if t.livemode:
        raise InvalidRequest(
            "live mode has no card network here; test payment methods work with sk_test_ keys only",
            param="paymentMethod",
        )
    pm_id = new_id("pm")
    await conn.execute(
        "INSERT INTO payment_methods (id, account_id, livemode, customer_pk, kind, brand, last4,"
        " created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        pm_id,
        t.account_id,
        t.livemode,
        customer_pk,
        method.kind,
        method.brand,
        method.last4,
        now_s(),
    )
    await conn.execute("UPDATE customers SET default_pm = $2 WHERE pk = $1", customer_pk, pm_id)
    return pm_id


@router.post("/v1/customers")
async def create_customer(body: CustomerCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        try:
            row = await conn.fetchrow(
                "INSERT INTO customers (id, account_id, livemode, name, email, metadata, created)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                body.id or new_id("cust"),
                t.account_id,
                t.livemode,
                body.name,
                body.email,
                body.metadata,
                now_s(),
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"a customer with id '{body.id}' already exists",
                param="id",
                code="resource_already_exists",
            ) from None
        if body.paymentMethod:
            await _attach(conn, t, row["pk"], body.paymentMethod)
            row = await conn.fetchrow("SELECT * FROM customers WHERE pk = $1", row["pk"])
        rendered = render_customer(row)
        await emit_event(conn, t.account_id, t.livemode, "customer.created", rendered)
    return Json(rendered)


async def _customer(
    db: asyncpg.Pool | asyncpg.Connection[Any], t: Tenant, cid: str
) -> asyncpg.Record:
    return await fetch_or_404(
        db,
        "SELECT * FROM customers WHERE account_id = $1 AND livemode = $2 AND id = $3",
        t.account_id,
        t.livemode,
        cid,
        what="customer",
        ident=cid,
    )


@router.get("/v1/customers/{customer_id}")
async def get_customer(customer_id: str, request: Request) -> Json:
    return Json(
        render_customer(await _customer(services(request).pool, tenant(request), customer_id))
    )


@router.post("/v1/customers/{customer_id}")
async def update_customer(customer_id: str, body: CustomerUpdate, request: Request) -> Json:
    """Set the fields given; an explicit ``null`` clears one (``name``, ``email``; ``metadata``
    becomes ``{}``; ``paymentMethod`` leaves the customer without a default method)."""
    t, s = tenant(request), services(request)
    given = body.model_fields_set
    async with s.pool.acquire() as conn, conn.transaction():
        row = await _customer(conn, t, customer_id)
        await conn.execute(
            "UPDATE customers SET name = CASE WHEN $2 THEN $3 ELSE name END,"
            " email = CASE WHEN $4 THEN $5 ELSE email END,"
            " metadata = CASE WHEN $6 THEN $7 ELSE metadata END,"
            " default_pm = CASE WHEN $8 THEN NULL ELSE default_pm END WHERE pk = $1",
            row["pk"],
            "name" in given,
            body.name,
            "email" in given,
            body.email,
            "metadata" in given,
            body.metadata or {},
            "paymentMethod" in given and body.paymentMethod is None,
        )
        if body.paymentMethod:
            await _attach(conn, t, row["pk"], body.paymentMethod)
        row = await conn.fetchrow("SELECT * FROM customers WHERE pk = $1", row["pk"])
        rendered = render_customer(row)
        await emit_event(conn, t.account_id, t.livemode, "customer.updated", rendered)
    return Json(rendered)


@router.get("/v1/payment_methods/{pm_id}")
async def get_payment_method(pm_id: str, request: Request) -> Json:
    """A method attached from a test token or card number: its card's brand and last4 show
    which one the customer was given."""
    t, s = tenant(request), services(request)
    row = await fetch_or_404(
        s.pool,
        "SELECT pm.*, c.id AS customer_id FROM payment_methods pm"
        " JOIN customers c ON c.pk = pm.customer_pk"
        " WHERE pm.id = $1 AND pm.account_id = $2 AND pm.livemode = $3",
        pm_id,
        t.account_id,
        t.livemode,
        what="payment method",
        ident=pm_id,
    )
    return Json(render_payment_method(row))


@router.get("/v1/customers")
async def list_customers(
    request: Request,
    limit: int = 10,
    starting_after: StartingAfter = None,
) -> Json:
    t, s = tenant(request), services(request)
    return Json(
        await page(
            s.pool,
            table="customers",
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/customers",
            render=render_customer,
        )
    )
