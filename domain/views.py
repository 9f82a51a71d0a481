"""Invoices and subscriptions as API objects, many at a time (a fixed number of queries
however many are asked for): event payloads in the invoicer's bulk transactions, and the
API's lists."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, TypeAlias

import asyncpg

from domain.objects import render_invoice, render_subscription

__all__ = ["load_invoice", "load_invoices", "load_subscriptions"]

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"

_ITEM_COLUMNS = (
    "si.*, p.id AS p_id, p.created AS p_created, p.livemode AS p_livemode,"
    " p.product_id AS p_product_id, p.currency AS p_currency, p.terms AS p_terms,"
    " p.active AS p_active, p.interval AS p_interval, p.interval_count AS p_interval_count,"
    " p.usage_type AS p_usage_type, p.aggregate_usage AS p_aggregate_usage,"
    " p.nickname AS p_nickname, p.metadata AS p_metadata"
)


async def load_invoices(db: Db, invoice_ids: list[str]) -> dict[str, dict[str, Any]]:
    """invoice id → rendered invoice with its lines; unknown ids are absent."""
    if not invoice_ids:
        return {}
    rows = await db.fetch(
        "SELECT i.*, c.id AS customer_id FROM invoices i JOIN customers c ON c.pk = i.customer_pk"
        " WHERE i.id = ANY($1::text[])",
        invoice_ids,
    )
    lines = await db.fetch(
        "SELECT l.*, si.id AS item_id FROM invoice_lines l"
        " LEFT JOIN subscription_items si ON si.pk = l.item_pk"
        " WHERE l.invoice_id = ANY($1::text[]) ORDER BY l.invoice_id, l.position",
        invoice_ids,
    )
    by_invoice: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for line in lines:
        by_invoice[line["invoice_id"]].append(line)
    price_ids = list({ln["price_id"] for ln in lines if ln["price_id"]})
    prices = (
        {
            p["id"]: p
            for p in await db.fetch("SELECT * FROM prices WHERE id = ANY($1::text[])", price_ids)
        }
        if price_ids
        else {}
    )
    return {r["id"]: render_invoice(r, by_invoice[r["id"]], prices) for r in rows}


async def load_invoice(db: Db, invoice_id: str) -> dict[str, Any] | None:
    return (await load_invoices(db, [invoice_id])).get(invoice_id)


async def load_subscriptions(db: Db, sub_ids: list[str]) -> dict[str, dict[str, Any]]:
    """subscription id → rendered subscription with its items; unknown ids are absent."""
    if not sub_ids:
        return {}
    rows = await db.fetch(
        "SELECT s.*, c.id AS customer_id FROM subscriptions s"
        " JOIN customers c ON c.pk = s.customer_pk WHERE s.id = ANY($1::text[])",
        sub_ids,
    )
    items = await db.fetch(
        f"SELECT {_ITEM_COLUMNS} FROM subscription_items si JOIN prices p ON p.id = si.price_id"
        " WHERE si.subscription_id = ANY($1::text[]) AND NOT si.deleted"
        " ORDER BY si.subscription_id, si.pk",
        sub_ids,
    )
    by_sub: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for item in items:
        by_sub[item["subscription_id"]].append(item)
    return {r["id"]: render_subscription(r, by_sub[r["id"]]) for r in rows}
