"""Storage of products and prices: every statement on ``products`` and ``prices``.

The control plane writes the catalog; the invoice steps and prorations read it. A price's
row is immutable once written, so reads take no locks.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import asyncpg

from domain.clock import now_s
from domain.tenant import Tenant
from infra.ids import new_id

__all__ = [
    "insert_price",
    "insert_product",
    "meter_id_of",
    "price",
    "pricing_rows",
    "product_exists",
    "rendered_price_rows",
    "tenant_price",
]

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"


def meter_id_of(alias: str, name: str = "meter_id") -> str:
    """The select item a rendered price needs beside its columns: the id of the meter it
    bills (``recurring.meter``), for the prices row aliased ``alias``."""
    return f"(SELECT m.id FROM meters m WHERE m.pk = {alias}.meter_pk) AS {name}"


async def insert_product(
    db: Db, t: Tenant, *, name: str, description: str | None, metadata: dict[str, str]
) -> asyncpg.Record:
    """The new product's row."""
    row: asyncpg.Record = await db.fetchrow(
        "INSERT INTO products (id, account_id, livemode, name, description, metadata, created)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
        new_id("prod"),
        t.account_id,
        t.livemode,
        name,
        description,
        metadata,
        now_s(),
    )
    return row


async def product_exists(db: Db, t: Tenant, product_id: str) -> bool:
    """Whether ``product_id`` is a product of this account and mode."""
    found = await db.fetchval(
        "SELECT id FROM products WHERE id = $1 AND account_id = $2 AND livemode = $3",
        product_id,
        t.account_id,
        t.livemode,
    )
    return found is not None


async def insert_price(
    db: Db,
    t: Tenant,
    *,
    product_id: str,
    currency: str,
    terms: dict[str, Any],
    interval: str,
    interval_count: int,
    usage_type: str,
    aggregate_usage: str | None,
    nickname: str | None,
    metadata: dict[str, str],
    meter_pk: int | None = None,
) -> asyncpg.Record:
    """The new price's row (with ``meter_id``); ``terms`` as ``domain.pricing.terms_to_json``
    writes them."""
    row: asyncpg.Record = await db.fetchrow(
        "WITH p AS (INSERT INTO prices (id, account_id, livemode, product_id, currency, terms,"
        " interval, interval_count, usage_type, aggregate_usage, nickname, metadata, created,"
        " meter_pk) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        f" RETURNING *) SELECT p.*, {meter_id_of('p')} FROM p",
        new_id("price"),
        t.account_id,
        t.livemode,
        product_id,
        currency,
        terms,
        interval,
        interval_count,
        usage_type,
        aggregate_usage,
        nickname,
        metadata,
        now_s(),
        meter_pk,
    )
    return row


async def tenant_price(db: Db, t: Tenant, price_id: str) -> asyncpg.Record | None:
    """The price ``price_id`` (with ``meter_id``) if it belongs to this account and mode."""
    row: asyncpg.Record | None = await db.fetchrow(
        f"SELECT p.*, {meter_id_of('p')} FROM prices p"
        " WHERE p.id = $1 AND p.account_id = $2 AND p.livemode = $3",
        price_id,
        t.account_id,
        t.livemode,
    )
    return row


async def price(db: Db, price_id: str) -> asyncpg.Record | None:
    """The price ``price_id``, whoever owns it: for ids read from rows already scoped."""
    row: asyncpg.Record | None = await db.fetchrow(
        f"SELECT p.*, {meter_id_of('p')} FROM prices p WHERE p.id = $1", price_id
    )
    return row


async def pricing_rows(db: Db, price_ids: list[str]) -> list[asyncpg.Record]:
    """What pricing or describing a line needs of each price: its terms, usage type and
    aggregation, the meter it bills and that meter's formula (``formula``; NULL for a price
    billing usage records), and its product's name (``name``)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT p.id, p.terms, p.usage_type, p.aggregate_usage, p.meter_pk, m.formula, pr.name"
        " FROM prices p JOIN products pr ON pr.id = p.product_id"
        " LEFT JOIN meters m ON m.pk = p.meter_pk"
        " WHERE p.id = ANY($1::text[])",
        price_ids,
    )
    return rows


async def rendered_price_rows(db: Db, price_ids: list[str]) -> dict[str, asyncpg.Record]:
    """price id → the price's row as ``domain.objects.render_price`` renders it (with
    ``meter_id``), whoever owns it: for ids read from rows already scoped."""
    if not price_ids:
        return {}
    rows = await db.fetch(
        f"SELECT p.*, {meter_id_of('p')} FROM prices p WHERE p.id = ANY($1::text[])",
        list(set(price_ids)),
    )
    return {r["id"]: r for r in rows}
