"""Customers and their sandbox payment methods."""

from __future__ import annotations

from typing import Any

import asyncpg
from fastapi import Request
from pydantic import Field

from control.common import ApiModel, Json, Limit, Metadata, StartingAfter, Text, services, tenant
from control.routing import api_router
from control.schemas import Customer, CustomerList, PaymentMethod
from domain.events import emit_event
from domain.objects import render_customer, render_payment_method
from domain.payments import known_methods, resolve_test_method
from domain.store import customers
from domain.store.owned import fetch_owned, found, page
from domain.tenant import Tenant
from infra.errors import Conflict, InvalidRequest

__all__ = ["router"]

router = api_router("customers")

_ID_PATTERN = r"^cust_[A-Za-z0-9_]{1,64}$"


class CustomerCreate(ApiModel):
    id: Text | None = Field(default=None, pattern=_ID_PATTERN)
    name: Text | None = Field(default=None, max_length=500)
    email: Text | None = Field(default=None, max_length=500)
    paymentMethod: Text | None = Field(default=None, max_length=64)
    metadata: Metadata = Field(default_factory=dict)


class CustomerUpdate(ApiModel):
    name: Text | None = Field(default=None, max_length=500)
    email: Text | None = Field(default=None, max_length=500)
    paymentMethod: Text | None = Field(default=None, max_length=64)
    metadata: Metadata | None = None


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
    return await customers.insert_payment_method(conn, t, customer_pk, method)


@router.post("/v1/customers", response_model=Customer)
async def create_customer(body: CustomerCreate, request: Request) -> Json:
    t, s = tenant(request), services(request)
    async with s.pool.acquire() as conn, conn.transaction():
        try:
            row = await customers.insert_customer(
                conn,
                t,
                customer_id=body.id,
                name=body.name,
                email=body.email,
                metadata=body.metadata,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(
                f"a customer with id '{body.id}' already exists",
                param="id",
                code="resource_already_exists",
            ) from None
        if body.paymentMethod:
            await _attach(conn, t, row["pk"], body.paymentMethod)
            row = await customers.customer_by_pk(conn, row["pk"])
        rendered = render_customer(row)
        await emit_event(conn, t.account_id, t.livemode, "customer.created", rendered)
    return Json(rendered)


async def _customer(
    db: asyncpg.Pool | asyncpg.Connection[Any], t: Tenant, cid: str
) -> asyncpg.Record:
    return await fetch_owned(db, "customers", t, cid, what="customer")


@router.get("/v1/customers/{customer_id}", response_model=Customer)
async def get_customer(customer_id: str, request: Request) -> Json:
    return Json(
        render_customer(await _customer(services(request).pool, tenant(request), customer_id))
    )


@router.post("/v1/customers/{customer_id}", response_model=Customer)
async def update_customer(customer_id: str, body: CustomerUpdate, request: Request) -> Json:
    """Set the fields given; an explicit ``null`` clears one (``name``, ``email``; ``metadata``
    becomes ``{}``; ``paymentMethod`` leaves the customer without a default method)."""
    t, s = tenant(request), services(request)
    given = body.model_fields_set
    async with s.pool.acquire() as conn, conn.transaction():
        row = await _customer(conn, t, customer_id)
        await customers.update_customer(
            conn,
            row["pk"],
            name=("name" in given, body.name),
            email=("email" in given, body.email),
            metadata=("metadata" in given, body.metadata or {}),
            clear_default_method="paymentMethod" in given and body.paymentMethod is None,
        )
        if body.paymentMethod:
            await _attach(conn, t, row["pk"], body.paymentMethod)
        row = await customers.customer_by_pk(conn, row["pk"])
        rendered = render_customer(row)
        await emit_event(conn, t.account_id, t.livemode, "customer.updated", rendered)
    return Json(rendered)


@router.get("/v1/payment_methods/{pm_id}", response_model=PaymentMethod)
async def get_payment_method(pm_id: str, request: Request) -> Json:
    """A method attached from a test token or card number: its card's brand and last4 show
    which one the customer was given."""
    t, s = tenant(request), services(request)
    row = found(
        await customers.payment_method(s.pool, t, pm_id), what="payment method", ident=pm_id
    )
    return Json(render_payment_method(row))


@router.get("/v1/customers", response_model=CustomerList)
async def list_customers(
    request: Request,
    limit: Limit = 10,
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
