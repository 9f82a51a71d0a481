"""The read side of invoices, their lines, charges and usage summaries: invoices rendered
many at a time (a fixed number of queries however many are asked for) for event payloads
in the billing operations' bulk transactions and the API's lists, and what the control
plane looks up to answer invoices, charges and an item's usage per period.

The billing operations (``domain.billing``) write these tables; nothing here writes.
The usage map is read here too, cut into time slices, for the Dashboard's usage chart.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from domain.metering import PeriodUsage, period_usage
from domain.objects import render_invoice, render_prices
from domain.store.catalog import rendered_price_rows
from domain.store.owned import loaded_page
from domain.tenant import Tenant

__all__ = [
    "Db",
    "UsageSlice",
    "charge_filter",
    "invoice_filter",
    "invoice_page",
    "item_windows",
    "load_invoice",
    "load_invoices",
    "owned_invoice",
    "subscription_invoices_by_period",
    "usage_item",
    "usage_item_scopes",
    "usage_periods",
    "usage_slices",
]

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"


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
    prices = render_prices(
        await rendered_price_rows(db, [ln["price_id"] for ln in lines if ln["price_id"]])
    )
    return {r["id"]: render_invoice(r, by_invoice[r["id"]], prices) for r in rows}


async def load_invoice(db: Db, invoice_id: str) -> dict[str, Any] | None:
    return (await load_invoices(db, [invoice_id])).get(invoice_id)


async def owned_invoice(db: Db, t: Tenant, invoice_id: str) -> asyncpg.Record | None:
    """The tenant's invoice's status and subscription; None when it has none of that id."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT status, subscription_id FROM invoices WHERE id = $1 AND account_id = $2"
        " AND livemode = $3",
        invoice_id,
        t.account_id,
        t.livemode,
    )
    return row


def invoice_filter(
    subscription: str | None, customer: str | None, status: str | None
) -> tuple[str, list[Any]]:
    """The invoice list's ``where`` and its arguments (after account and mode); the
    filters combine."""
    where, args = "", []
    if subscription is not None:
        args.append(subscription)
        where += f" AND t.subscription_id = ${len(args) + 2}"
    if customer is not None:
        args.append(customer)
        where += (
            f" AND t.customer_pk = (SELECT pk FROM customers WHERE account_id = $1"
            f" AND livemode = $2 AND id = ${len(args) + 2})"
        )
    if status is not None:
        args.append(status)
        where += f" AND t.status = ${len(args) + 2}"
    return where, args


async def invoice_page(
    pool: asyncpg.Pool,
    t: Tenant,
    *,
    limit: int,
    starting_after: str | None = None,
    subscription: str | None = None,
    customer: str | None = None,
    status: str | None = None,
    url: str = "/v1/invoices",
) -> dict[str, Any]:
    """One list page of the tenant's invoices, newest first, each rendered with its lines;
    the filters combine. ``url``: where the page is listed (the API, the Dashboard)."""
    where, args = invoice_filter(subscription, customer, status)
    return await loaded_page(
        pool,
        table="invoices",
        t=t,
        limit=limit,
        starting_after=starting_after,
        url=url,
        load=load_invoices,
        where=where,
        args=args,
    )


def charge_filter(invoice: str | None) -> tuple[str, list[Any]]:
    """The charge list's ``where`` and its arguments (after account and mode)."""
    return ("", []) if invoice is None else (" AND t.invoice_id = $3", [invoice])


async def usage_item(db: Db, t: Tenant, item_id: str) -> asyncpg.Record | None:
    """The tenant's subscription item with what its usage summaries need: its price's
    aggregation and its subscription's current period and status."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT si.pk, si.id, si.subscription_id, si.price_id, p.aggregate_usage, p.usage_type,"
        " s.current_period_start, s.current_period_end, s.status, s.ended_at"
        " FROM subscription_items si"
        " JOIN prices p ON p.id = si.price_id JOIN subscriptions s ON s.id = si.subscription_id"
        " WHERE si.account_id = $1 AND si.livemode = $2 AND si.id = $3",
        t.account_id,
        t.livemode,
        item_id,
    )
    return row


async def usage_item_scopes(db: Db, item_id: str, account_id: str | None = None) -> list[Tenant]:
    """Every account and mode holding a subscription item of this id (of ``account_id``
    only, if given): item ids are unique within an account and mode, and a caller may name
    its own. For operators, who act across accounts."""
    rows = await db.fetch(
        "SELECT account_id, livemode FROM subscription_items WHERE id = $1"
        " AND ($2::text IS NULL OR account_id = $2) ORDER BY account_id, livemode",
        item_id,
        account_id,
    )
    return [Tenant(r["account_id"], r["livemode"]) for r in rows]


async def usage_periods(db: Db, item: asyncpg.Record) -> list[PeriodUsage]:
    """The item's usage per period, newest first, as the usage summaries answer it; ``item``
    as ``usage_item`` finds it."""
    windows = await item_windows(db, item["pk"])
    invoices = await subscription_invoices_by_period(db, item["pk"])
    running = (
        None
        if item["status"] == "canceled"
        else (item["current_period_start"], item["current_period_end"])
    )
    return period_usage(item["aggregate_usage"], windows, running, invoices)


async def item_windows(db: Db, item_pk: int) -> list[asyncpg.Record]:
    """The item's usage windows, oldest period first."""
    return list(
        await db.fetch(
            "SELECT * FROM usage_windows WHERE item_pk = $1 ORDER BY period_start", item_pk
        )
    )


async def subscription_invoices_by_period(db: Db, item_pk: int) -> dict[int, str]:
    """period start → the invoice that billed the item's usage for that period."""
    return {
        r["period_start"]: r["id"]
        for r in await db.fetch(
            "SELECT DISTINCT i.period_start, i.id FROM invoice_lines l"
            " JOIN invoices i ON i.id = l.invoice_id"
            " WHERE l.item_pk = $1 AND l.type = 'subscription'",
            item_pk,
        )
    }


@dataclass(frozen=True, slots=True)
class UsageSlice:
    """One time slice of a period's usage map: the sum and largest of its quantities, and
    the quantity at its latest timestamp."""

    index: int
    total: int
    max: int
    last_ts: int
    last: int


async def usage_slices(
    db: Db, item_pk: int, start: int, end: int, count: int, *, upto: int | None = None
) -> list[UsageSlice]:
    """The item's usage map over ``[start, end)`` cut into ``count`` equal slices, oldest
    first; slices without usage are absent. One row per slice, however many points.
    ``upto`` leaves out points from then on (a chart that ends before its last slice does)."""
    if count < 1 or end <= start:
        raise ValueError("a usage map is cut into at least one slice of a non-empty span")
    rows = await db.fetch(
        "SELECT least((p.ts - $2) * $4 / ($3 - $2), $4 - 1) AS slice, sum(p.quantity) AS total,"
        " max(p.quantity) AS max, max(p.ts) AS last_ts,"
        " (array_agg(p.quantity ORDER BY p.ts DESC))[1] AS last"
        " FROM usage_points p WHERE p.item_pk = $1 AND p.ts >= $2 AND p.ts < $5"
        " GROUP BY 1 ORDER BY 1",
        item_pk,
        start,
        end,
        count,
        end if upto is None else min(end, upto),
    )
    return [
        UsageSlice(int(r["slice"]), int(r["total"]), int(r["max"]), r["last_ts"], int(r["last"]))
        for r in rows
    ]
