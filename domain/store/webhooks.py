"""Storage of events, webhook endpoints, their deliveries and delivery attempts, as the
outbox and the control plane use them. With ``domain.store.delivery_queue`` (the
dispatcher's claims and outcomes) this holds every SQL statement on ``events``,
``webhook_endpoints``, ``webhook_deliveries`` and ``webhook_attempts``; callers keep their
rules (validation, what to write when) to themselves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import asyncpg

from domain.tenant import Tenant

__all__ = [
    "ENDPOINT_LIST",
    "Db",
    "Listing",
    "attempts",
    "cancel_pending",
    "delete_endpoint",
    "deliveries",
    "delivery_id",
    "event",
    "event_head",
    "event_list",
    "insert_endpoint",
    "insert_outbox",
    "live_endpoint",
    "recent_deliveries",
    "requeue_deliveries",
    "roll_secret",
    "subscribed_endpoints",
    "subscribes",
    "update_endpoint",
]

# Either a pool or a connection (the caller's, inside its transaction).
Db: TypeAlias = "asyncpg.Pool | asyncpg.Connection[Any]"


@dataclass(frozen=True, slots=True)
class Listing:
    """A table and filter for the control plane's generic newest-first pagination."""

    table: str
    where: str = ""
    args: tuple[Any, ...] = ()


# Live (not deleted) endpoints, as the endpoint list shows them.
ENDPOINT_LIST = Listing("webhook_endpoints", " AND t.deleted_at IS NULL")


def event_list(event_type: str | None = None) -> Listing:
    """The event list, optionally of one type."""
    if event_type is None:
        return Listing("events")
    return Listing("events", " AND t.type = $3", (event_type,))


# ---- the outbox ----------------------------------------------------------------------------


async def insert_outbox(
    conn: asyncpg.Connection[Any],
    *,
    ids: list[str],
    accounts: list[str],
    modes: list[bool],
    types: list[str],
    payloads: list[dict[str, Any]],
    payload_of: list[int],
    created: int,
) -> None:
    """Insert the events (in list order) and one pending delivery, due now (the server's
    clock), per endpoint of their account and mode that is not disabled and subscribes to
    their type (``subscribes``). Event ``k`` carries ``payloads[payload_of[k]]``: events
    sharing a payload (an invoice's ``paid`` and ``payment_succeeded``) render it once.

    Events and deliveries go in with ``COPY`` (binary, jsonb in its binary form: see
    ``infra.db``): the payloads, ~2 KB each and thousands a second from the invoicer, are
    most of what Postgres writes for a billing batch, and ``COPY`` takes them without the
    array literal and statement an ``INSERT … SELECT unnest(…)`` parses. The endpoints are
    read once (``_OUTBOX_ENDPOINTS``) and matched to the events here."""
    await conn.copy_records_to_table(
        "events",
        columns=_EVENT_COLUMNS,
        records=[
            (i, a, m, t, payloads[k], created)
            for i, a, m, t, k in zip(ids, accounts, modes, types, payload_of, strict=True)
        ],
    )
    endpoints: dict[tuple[str, bool], list[asyncpg.Record]] = {}
    due = 0.0
    for e in await conn.fetch(_OUTBOX_ENDPOINTS, list(set(accounts))):
        endpoints.setdefault((e["account_id"], e["livemode"]), []).append(e)
        due = e["now"]
    if not endpoints:
        return
    records = [
        (delivery_id(i, e["id"]), i, e["id"], due, created)
        for i, a, m, t in zip(ids, accounts, modes, types, strict=True)
        for e in endpoints.get((a, m), ())
        if subscribes(e["enabled_events"], t)
    ]
    if records:
        await conn.copy_records_to_table(
            "webhook_deliveries", columns=_DELIVERY_COLUMNS, records=records
        )


def subscribes(enabled_events: Sequence[str], event_type: str) -> bool:
    """The subscription rule: an endpoint takes the types it enables, or every type
    with ``*``."""
    return event_type in enabled_events or "*" in enabled_events


def delivery_id(event_id: str, endpoint_id: str) -> str:
    """A delivery's id, one per (event, endpoint): queueing it again finds the same one."""
    return "whd_" + hashlib.md5((event_id + endpoint_id).encode()).hexdigest()


# The endpoints an outbox write delivers to (not disabled), with the server's clock (when
# their deliveries are due).
_OUTBOX_ENDPOINTS = (
    "SELECT id, account_id, livemode, enabled_events,"
    " extract(epoch from clock_timestamp())::float8 AS now FROM webhook_endpoints"
    " WHERE account_id = ANY($1::text[]) AND status <> 'disabled'"
)

_DELIVERY_COLUMNS = ("id", "event_id", "endpoint_id", "next_attempt_at", "created")
_EVENT_COLUMNS = ("id", "account_id", "livemode", "type", "data", "created")


# ---- events and their deliveries -----------------------------------------------------------


async def event(db: Db, t: Tenant, event_id: str) -> asyncpg.Record | None:
    """The tenant's event, whole."""
    return await db.fetchrow(
        "SELECT * FROM events WHERE id = $1 AND account_id = $2 AND livemode = $3",
        event_id,
        t.account_id,
        t.livemode,
    )


async def event_head(db: Db, t: Tenant, event_id: str) -> asyncpg.Record | None:
    """The tenant's event's ``id`` and ``type`` only (its data can be large)."""
    return await db.fetchrow(
        "SELECT id, type FROM events WHERE id = $1 AND account_id = $2 AND livemode = $3",
        event_id,
        t.account_id,
        t.livemode,
    )


async def deliveries(
    db: Db,
    event_id: str,
    *,
    endpoints: list[str] | None,
    starting_after: str | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Up to ``limit`` of the event's deliveries (to ``endpoints`` if given) after
    ``starting_after``, ordered by id, each with its event's mode and endpoint's url."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT d.*, e.livemode, w.url FROM webhook_deliveries d"
        " JOIN events e ON e.id = d.event_id JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " WHERE d.event_id = $1 AND ($2::text[] IS NULL OR d.endpoint_id = ANY($2::text[]))"
        "   AND ($3::text IS NULL OR d.id > $3) ORDER BY d.id LIMIT $4",
        event_id,
        endpoints,
        starting_after,
        limit,
    )
    return rows


async def recent_deliveries(db: Db, endpoint_id: str, limit: int) -> list[asyncpg.Record]:
    """The endpoint's ``limit`` most recent deliveries, newest first, each with its event's
    mode and type and the endpoint's url."""
    rows: list[asyncpg.Record] = await db.fetch(
        "SELECT d.*, e.livemode, e.type AS event_type, w.url FROM webhook_deliveries d"
        " JOIN events e ON e.id = d.event_id JOIN webhook_endpoints w ON w.id = d.endpoint_id"
        " WHERE d.endpoint_id = $1 ORDER BY d.created DESC, d.id DESC LIMIT $2",
        endpoint_id,
        limit,
    )
    return rows


async def attempts(db: Db, delivery_ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    """The deliveries' attempts, by delivery id, oldest first."""
    found: dict[str, list[asyncpg.Record]] = {}
    for a in await db.fetch(
        "SELECT * FROM webhook_attempts WHERE delivery_id = ANY($1::text[])"
        " ORDER BY delivery_id, attempt",
        delivery_ids,
    ):
        found.setdefault(a["delivery_id"], []).append(a)
    return found


async def requeue_deliveries(
    conn: asyncpg.Connection[Any], event_id: str, endpoint_ids: list[str], created: int
) -> None:
    """Make the event's delivery to each endpoint pending and due now: new ones are created,
    existing ones keep their id and attempts but restart their retry window."""
    await conn.execute(
        "INSERT INTO webhook_deliveries (id, event_id, endpoint_id, next_attempt_at, created)"
        " SELECT d, $1, w, extract(epoch from clock_timestamp()), $4"
        " FROM unnest($2::text[], $3::text[]) AS v(w, d)"
        " ON CONFLICT (event_id, endpoint_id) DO UPDATE SET status = 'pending',"
        "   next_attempt_at = excluded.next_attempt_at, first_attempt_at = NULL,"
        "   delivered_at = NULL",
        event_id,
        endpoint_ids,
        [delivery_id(event_id, w) for w in endpoint_ids],
        created,
    )


async def cancel_pending(conn: asyncpg.Connection[Any], endpoint_id: str, why: str) -> None:
    """Cancel every pending delivery to the endpoint, saying why."""
    await conn.execute(
        "UPDATE webhook_deliveries SET status = 'canceled', last_error = $2"
        " WHERE endpoint_id = $1 AND status = 'pending'",
        endpoint_id,
        why,
    )


# ---- endpoints -----------------------------------------------------------------------------

_LIVE_ENDPOINT = (
    "SELECT * FROM webhook_endpoints WHERE id = $1 AND account_id = $2 AND livemode = $3"
    " AND deleted_at IS NULL"
)


async def live_endpoint(
    db: Db, t: Tenant, endpoint_id: str, *, for_update: bool = False
) -> asyncpg.Record | None:
    """The tenant's endpoint unless deleted; ``for_update`` locks it for the transaction."""
    query = _LIVE_ENDPOINT + " FOR UPDATE" if for_update else _LIVE_ENDPOINT
    return await db.fetchrow(query, endpoint_id, t.account_id, t.livemode)


async def subscribed_endpoints(db: Db, t: Tenant, event_type: str) -> list[str]:
    """Ids of the tenant's live endpoints, enabled or failing, subscribed to the type."""
    return [
        r["id"]
        for r in await db.fetch(
            "SELECT id, enabled_events FROM webhook_endpoints WHERE account_id = $1"
            " AND livemode = $2 AND status <> 'disabled' AND deleted_at IS NULL ORDER BY id",
            t.account_id,
            t.livemode,
        )
        if subscribes(r["enabled_events"], event_type)
    ]


async def insert_endpoint(
    db: Db,
    t: Tenant,
    *,
    endpoint_id: str,
    url: str,
    enabled_events: list[str],
    secret: str,
    description: str | None,
    created: int,
) -> asyncpg.Record:
    """Create the endpoint; returns its row."""
    row: asyncpg.Record = await db.fetchrow(
        "INSERT INTO webhook_endpoints (id, account_id, livemode, url, enabled_events, secret,"
        " description, created) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
        endpoint_id,
        t.account_id,
        t.livemode,
        url,
        enabled_events,
        secret,
        description,
        created,
    )
    return row


async def update_endpoint(
    conn: asyncpg.Connection[Any],
    endpoint_id: str,
    *,
    url: str | None,
    enabled_events: list[str] | None,
    status: str | None,
    set_description: bool,
    description: str | None,
) -> asyncpg.Record:
    """Change the fields given (``None`` keeps one; ``description`` is written, even as
    ``None``, when ``set_description``); returns the row. The caller has checked it exists."""
    row: asyncpg.Record = await conn.fetchrow(
        "UPDATE webhook_endpoints SET url = coalesce($2, url),"
        " enabled_events = coalesce($3, enabled_events), status = coalesce($4, status),"
        " description = CASE WHEN $5 THEN $6 ELSE description END"
        " WHERE id = $1 RETURNING *",
        endpoint_id,
        url,
        enabled_events,
        status,
        set_description,
        description,
    )
    return row


async def delete_endpoint(
    conn: asyncpg.Connection[Any], t: Tenant, endpoint_id: str, deleted_at: int
) -> bool:
    """Disable and hide the tenant's live endpoint; False if there is none."""
    row = await conn.fetchrow(
        "UPDATE webhook_endpoints SET status = 'disabled', deleted_at = $4"
        " WHERE id = $1 AND account_id = $2 AND livemode = $3 AND deleted_at IS NULL"
        " RETURNING id",
        endpoint_id,
        t.account_id,
        t.livemode,
        deleted_at,
    )
    return row is not None


async def roll_secret(
    db: Db, t: Tenant, endpoint_id: str, secret: str, previous_expires: int
) -> asyncpg.Record | None:
    """Replace the live endpoint's secret, keeping the old one until ``previous_expires``
    (so a second roll retires the older one at once); its row, or None."""
    return await db.fetchrow(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_expires = $5,"
        " secret = $4 WHERE id = $1 AND account_id = $2 AND livemode = $3"
        " AND deleted_at IS NULL RETURNING *",
        endpoint_id,
        t.account_id,
        t.livemode,
        secret,
        previous_expires,
    )
