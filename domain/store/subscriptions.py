"""Storage of subscriptions, their items, the items' price-change history, test clocks and
the pending invoice items a mid-period change queues: every statement the control plane
runs on these tables, and the rendering of subscriptions many at a time (a fixed number of
queries however many are asked for).

The version of a subscription is not written here: ``domain.itemmeta`` owns it, so a change
that ingest's metadata depends on goes through its ``Changes`` (see ``cancel``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, TypeAlias

import asyncpg

from domain.clock import now_s
from domain.itemmeta import Changes
from domain.objects import render_prices, render_subscription
from domain.periods import Period
from domain.store.catalog import rendered_price_rows
from domain.store.owned import loaded_page
from domain.tenant import Tenant

__all__ = [
    "ITEM_ID_OF_PK",
    "PendingItem",
    "cancel",
    "clock",
    "clock_frozen_time",
    "insert_clock",
    "insert_invoice_items",
    "insert_item",
    "insert_subscription",
    "item_pk",
    "load_subscription",
    "load_subscriptions",
    "lock_item",
    "lock_subscription",
    "move_clock",
    "owned_clock",
    "owned_clock_time",
    "record_price_change",
    "set_test_clock",
    "subscription_filter",
    "subscription_page",
    "update_item",
    "update_settings",
]

Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"

# A listing's column: the id of the subscription item a row's ``item_pk`` names.
ITEM_ID_OF_PK = "(SELECT si.id FROM subscription_items si WHERE si.pk = t.item_pk) AS item_id"

_SUB = (
    "SELECT s.*, c.id AS customer_id FROM subscriptions s JOIN customers c ON c.pk = s.customer_pk"
)
_ITEMS = (
    "SELECT si.* FROM subscription_items si"
    " WHERE si.subscription_id = ANY($1::text[]) AND NOT si.deleted"
    " ORDER BY si.subscription_id, si.pk"
)

# (id, price id, description, quantity, amount) of a pending invoice item.
PendingItem: TypeAlias = tuple[str, str, str, int, int]


async def _items_by_subscription(
    db: Db, sub_ids: list[str]
) -> tuple[dict[str, list[asyncpg.Record]], dict[str, dict[str, Any]]]:
    """The subscriptions' items by subscription, and their prices rendered (each once)."""
    by_sub: dict[str, list[asyncpg.Record]] = defaultdict(list)
    items = await db.fetch(_ITEMS, sub_ids)
    for item in items:
        by_sub[item["subscription_id"]].append(item)
    prices = render_prices(await rendered_price_rows(db, [i["price_id"] for i in items]))
    return by_sub, prices


async def load_subscriptions(db: Db, sub_ids: list[str]) -> dict[str, dict[str, Any]]:
    """subscription id → rendered subscription with its items; unknown ids are absent."""
    if not sub_ids:
        return {}
    rows = await db.fetch(_SUB + " WHERE s.id = ANY($1::text[])", sub_ids)
    by_sub, prices = await _items_by_subscription(db, sub_ids)
    return {r["id"]: render_subscription(r, by_sub[r["id"]], prices) for r in rows}


async def load_subscription(db: Db, t: Tenant, sub_id: str) -> dict[str, Any] | None:
    """The tenant's subscription rendered with its items; None when it has none of that id."""
    row = await db.fetchrow(
        _SUB + " WHERE s.id = $1 AND s.account_id = $2 AND s.livemode = $3",
        sub_id,
        t.account_id,
        t.livemode,
    )
    if row is None:
        return None
    by_sub, prices = await _items_by_subscription(db, [sub_id])
    return render_subscription(row, by_sub[sub_id], prices)


def subscription_filter(customer: str | None) -> tuple[str, list[Any]]:
    """The subscription list's ``where`` and its arguments (after account and mode)."""
    if customer is None:
        return "", []
    return (
        " AND t.customer_pk = (SELECT pk FROM customers WHERE account_id = $1"
        " AND livemode = $2 AND id = $3)",
        [customer],
    )


async def subscription_page(
    pool: asyncpg.Pool,
    t: Tenant,
    *,
    limit: int,
    starting_after: str | None = None,
    customer: str | None = None,
    url: str = "/v1/subscriptions",
) -> dict[str, Any]:
    """One list page of the tenant's subscriptions, newest first, each rendered with its
    items. ``url``: where the page is listed (the API, the Dashboard)."""
    where, args = subscription_filter(customer)
    return await loaded_page(
        pool,
        table="subscriptions",
        t=t,
        limit=limit,
        starting_after=starting_after,
        url=url,
        load=load_subscriptions,
        where=where,
        args=args,
    )


async def insert_subscription(
    conn: asyncpg.Connection[Any],
    t: Tenant,
    sub_id: str,
    *,
    customer_pk: int,
    test_clock_id: str | None,
    first_price: asyncpg.Record,
    anchor: int,
    period: Period,
    cancel_at_period_end: bool,
    metadata: dict[str, str],
) -> None:
    """A new active subscription billing ``first_price``'s currency and interval."""
    await conn.execute(
        "INSERT INTO subscriptions (id, account_id, livemode, customer_pk, status,"
        " test_clock_id, currency, interval, interval_count, anchor,"
        " current_period_start, current_period_end, cancel_at_period_end, metadata,"
        " created) VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $11, $12,"
        " $13, $14)",
        sub_id,
        t.account_id,
        t.livemode,
        customer_pk,
        test_clock_id,
        first_price["currency"],
        first_price["interval"],
        first_price["interval_count"],
        anchor,
        period.start,
        period.end,
        cancel_at_period_end,
        metadata,
        anchor,
    )


async def lock_subscription(
    conn: asyncpg.Connection[Any], t: Tenant, sub_id: str
) -> asyncpg.Record | None:
    """The tenant's subscription, locked for the caller's transaction."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT * FROM subscriptions WHERE id = $1 AND account_id = $2 AND livemode = $3"
        " FOR UPDATE",
        sub_id,
        t.account_id,
        t.livemode,
    )
    return row


async def update_settings(
    conn: asyncpg.Connection[Any],
    sub_id: str,
    cancel_at_period_end: bool | None,
    metadata: dict[str, str] | None,
) -> None:
    """Set what is given of ``cancel_at_period_end`` and ``metadata``."""
    await conn.execute(
        "UPDATE subscriptions SET cancel_at_period_end = coalesce($2,"
        " cancel_at_period_end), metadata = coalesce($3, metadata) WHERE id = $1",
        sub_id,
        cancel_at_period_end,
        metadata,
    )


async def cancel(changes: Changes, sub_id: str, at: int) -> None:
    """Cancel at ``at``, leaving the final invoice to the invoicer (a status change: bumped)."""
    await changes.update(
        "status = 'canceled', canceled_at = $2, ended_at = $2, final_invoice_pending = true",
        "WHERE s.id = $1",
        sub_id,
        at,
    )


async def set_test_clock(conn: asyncpg.Connection[Any], sub_id: str, clock_id: str) -> None:
    await conn.execute(
        "UPDATE subscriptions SET test_clock_id = $2 WHERE id = $1", sub_id, clock_id
    )


async def insert_item(
    conn: asyncpg.Connection[Any],
    t: Tenant,
    item_id: str,
    sub_id: str,
    price_id: str,
    quantity: int | None,
    created: int,
) -> int:
    """A new item of the subscription; its pk. A taken ``item_id`` raises
    ``asyncpg.UniqueViolationError``."""
    pk: int = await conn.fetchval(
        "INSERT INTO subscription_items (id, account_id, livemode, subscription_id, price_id,"
        " quantity, created) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING pk",
        item_id,
        t.account_id,
        t.livemode,
        sub_id,
        price_id,
        quantity,
        created,
    )
    return pk


async def item_pk(db: Db, t: Tenant, item_id: str) -> int | None:
    """The pk of the tenant's subscription item (deleted ones included)."""
    pk: int | None = await db.fetchval(
        "SELECT pk FROM subscription_items WHERE account_id = $1 AND livemode = $2 AND id = $3",
        t.account_id,
        t.livemode,
        item_id,
    )
    return pk


async def lock_item(
    conn: asyncpg.Connection[Any], sub_id: str, item_id: str
) -> asyncpg.Record | None:
    """The subscription's live item with its price's usage type, locked."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT si.*, p.usage_type FROM subscription_items si JOIN prices p"
        " ON p.id = si.price_id WHERE si.id = $1 AND si.subscription_id = $2"
        " AND NOT si.deleted FOR UPDATE OF si",
        item_id,
        sub_id,
    )
    return row


async def update_item(
    conn: asyncpg.Connection[Any], pk: int, price_id: str, quantity: int | None
) -> None:
    await conn.execute(
        "UPDATE subscription_items SET price_id = $2, quantity = $3 WHERE pk = $1",
        pk,
        price_id,
        quantity,
    )


async def record_price_change(
    conn: asyncpg.Connection[Any], item_pk: int, at: int, old_price_id: str, new_price_id: str
) -> None:
    """The item bills ``new_price_id`` from ``at`` on: metered usage is billed in segments."""
    await conn.execute(
        "INSERT INTO subscription_item_price_changes (item_pk, changed_at, old_price_id,"
        " new_price_id, created) VALUES ($1, $2, $3, $4, $5)",
        item_pk,
        at,
        old_price_id,
        new_price_id,
        now_s(),
    )


async def insert_invoice_items(
    conn: asyncpg.Connection[Any],
    sub: asyncpg.Record,
    item_pk: int,
    items: Sequence[PendingItem],
    period_start: int,
    period_end: int,
) -> None:
    """Queue proration invoice items of ``sub``'s item for its next invoice."""
    await conn.executemany(
        "INSERT INTO invoice_items (id, account_id, livemode, subscription_id, item_pk,"
        " price_id, description, quantity, amount, proration, period_start, period_end,"
        " created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, true, $10, $11, $12)",
        [
            (
                ii,
                sub["account_id"],
                sub["livemode"],
                sub["id"],
                item_pk,
                price_id,
                description,
                quantity,
                amount,
                period_start,
                period_end,
                now_s(),
            )
            for ii, price_id, description, quantity, amount in items
        ],
    )


async def owned_clock_time(db: Db, account_id: str, clock_id: str) -> int | None:
    """The frozen time of the account's test clock; None when it has no such clock."""
    frozen: int | None = await db.fetchval(
        "SELECT frozen_time FROM test_clocks WHERE id = $1 AND account_id = $2",
        clock_id,
        account_id,
    )
    return frozen


async def clock_frozen_time(conn: asyncpg.Connection[Any], clock_id: str) -> int:
    frozen: int = await conn.fetchval("SELECT frozen_time FROM test_clocks WHERE id = $1", clock_id)
    return frozen


async def insert_clock(
    db: Db, clock_id: str, account_id: str, name: str | None, frozen_time: int, created: int
) -> asyncpg.Record:
    """A new sandbox test clock."""
    row: asyncpg.Record = await db.fetchrow(
        "INSERT INTO test_clocks (id, account_id, livemode, name, frozen_time, created)"
        " VALUES ($1, $2, false, $3, $4, $5) RETURNING *",
        clock_id,
        account_id,
        name,
        frozen_time,
        created,
    )
    return row


async def owned_clock(
    db: Db, account_id: str, clock_id: str, *, lock: bool = False
) -> asyncpg.Record | None:
    """The account's test clock, locked for the caller's transaction when ``lock``."""
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM test_clocks WHERE id = $1 AND account_id = $2"
        + (" FOR UPDATE" if lock else ""),
        clock_id,
        account_id,
    )
    return row


async def clock(db: Db, clock_id: str) -> asyncpg.Record:
    row: asyncpg.Record = await db.fetchrow("SELECT * FROM test_clocks WHERE id = $1", clock_id)
    return row


async def move_clock(conn: asyncpg.Connection[Any], clock_id: str, frozen_time: int) -> None:
    """Move the clock; ``advancing`` until the billing operations have settled it."""
    await conn.execute(
        "UPDATE test_clocks SET frozen_time = $2, status = 'advancing' WHERE id = $1",
        clock_id,
        frozen_time,
    )
