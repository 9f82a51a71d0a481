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
    "price",
    "pricing_rows",
    "product_exists",
    "tenant_price",
]

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"


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
) -> asyncpg.Record:
    """The new price's row; ``terms`` as ``domain.pricing.terms_to_json`` writes them."""
    row: asyncpg.Record = await db.fetchrow(
        "INSERT INTO prices (id, account_id, livemode, product_id, currency, terms, interval,"
        " interval_count, usage_type, aggregate_usage, nickname, metadata, created)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING *",
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
    )
    return row


async def tenant_price(db: Db, t: Tenant, price_id: str) -> asyncpg.Record | None:
    """The price ``price_id`` if it belongs to this account and mode."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM prices WHERE id = $1 AND account_id = $2 AND livemode = $3",
        price_id,
        t.account_id,
        t.livemode,
    )
    return row


async def price(db: Db, price_id: str) -> asyncpg.Record | None:
    """The price ``price_id``, whoever owns it: for ids read from rows already scoped."""
    row: asyncpg.Record | None = await db.fetchrow("SELECT * FROM prices WHERE id = $1", price_id)
    return row


async def pricing_rows(db: Db, price_ids: list[str]) -> list[asyncpg.Record]:
    """What pricing or describing a line needs of each price: its terms, usage type and
    aggregation, and its product's name (``name``)."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT p.id, p.terms, p.usage_type, p.aggregate_usage, pr.name"
        " FROM prices p JOIN products pr ON pr.id = p.product_id"
        " WHERE p.id = ANY($1::text[])",
        price_ids,
    )
    return rows
