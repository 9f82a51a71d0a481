"""Storage of customers and their payment methods: every statement on ``customers`` and
``payment_methods``.

Writes take the caller's connection so that a customer, its method and the event telling
of them commit together.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from domain.clock import now_s
from domain.payments import TestMethod
from domain.tenant import Tenant
from infra.ids import new_id

__all__ = [
    "customer_by_pk",
    "customer_pk",
    "insert_customer",
    "insert_payment_method",
    "payment_method",
    "update_customer",
]

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"


async def insert_customer(
    conn: asyncpg.Connection[Any],
    t: Tenant,
    *,
    customer_id: str | None,
    name: str | None,
    email: str | None,
    metadata: dict[str, str],
) -> asyncpg.Record:
    """The new customer's row, under ``customer_id`` when given (else a new id);
    ``asyncpg.UniqueViolationError`` when that id is taken."""
    row: asyncpg.Record = await conn.fetchrow(
        "INSERT INTO customers (id, account_id, livemode, name, email, metadata, created)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        customer_id or new_id("cust"),
        t.account_id,
        t.livemode,
        name,
        email,
        metadata,
        now_s(),
    )
    return row


async def customer_by_pk(db: Db, customer_pk: int) -> asyncpg.Record:
    """The customer row ``customer_pk``, which the caller knows exists."""
    row: asyncpg.Record = await db.fetchrow("SELECT * FROM customers WHERE pk = $1", customer_pk)
    return row


async def customer_pk(db: Db, t: Tenant, customer_id: str) -> int | None:
    """The key of the customer ``customer_id`` of this account and mode, if there is one."""
    pk: int | None = await db.fetchval(
        "SELECT pk FROM customers WHERE account_id = $1 AND livemode = $2 AND id = $3",
        t.account_id,
        t.livemode,
        customer_id,
    )
    return pk


async def update_customer(
    conn: asyncpg.Connection[Any],
    customer_pk: int,
    *,
    name: tuple[bool, str | None],
    email: tuple[bool, str | None],
    metadata: tuple[bool, dict[str, str]],
    clear_default_method: bool,
) -> None:
    """Set each field whose pair reads ``(True, value)``; leave the others as they are."""
    await conn.execute(
        "UPDATE customers SET name = CASE WHEN $2 THEN $3 ELSE name END,"
        " email = CASE WHEN $4 THEN $5 ELSE email END,"
        " metadata = CASE WHEN $6 THEN $7 ELSE metadata END,"
        " default_pm = CASE WHEN $8 THEN NULL ELSE default_pm END WHERE pk = $1",
        customer_pk,
        *name,
        *email,
        *metadata,
        clear_default_method,
    )


async def insert_payment_method(
    conn: asyncpg.Connection[Any], t: Tenant, customer_pk: int, method: TestMethod
) -> str:
    """Attach ``method`` to the customer as its default; the new method's id."""
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


async def payment_method(db: Db, t: Tenant, pm_id: str) -> asyncpg.Record | None:
    """The payment method ``pm_id`` of this account and mode, with its ``customer_id``."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT pm.*, c.id AS customer_id FROM payment_methods pm"
        " JOIN customers c ON c.pk = pm.customer_pk"
        " WHERE pm.id = $1 AND pm.account_id = $2 AND pm.livemode = $3",
        pm_id,
        t.account_id,
        t.livemode,
    )
    return row
