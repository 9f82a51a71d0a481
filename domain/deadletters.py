"""Usage the aggregator could not fold, kept with the reason instead of being dropped.

Reasons:

``period_invoiced``
    the request's window was already closed by its finalized invoice (it arrived after
    the grace period, e.g. from a stalled producer or a replayed topic);
``invalid_records``
    the request's records are malformed or outside the period it was accepted for.

Each dead letter is written in the aggregator's batch transaction, with a
``usage_record.dead_lettered`` event (outbox), and is unique per request (ledger id).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import asyncpg

from domain.clock import now_s
from domain.events import emit_event
from infra.ids import new_id

__all__ = [
    "REASONS",
    "Unfoldable",
    "insert_dead_letters",
    "list_dead_letters",
    "render_dead_letter",
]

log = logging.getLogger(__name__)

REASONS = ("period_invoiced", "invalid_records")


class Unfoldable(Protocol):
    """What a dead letter keeps of a request the aggregator could not fold."""

    id: str
    account_id: str
    livemode: bool
    item_pk: int
    period_start: int
    period_end: int
    accepted_at: int
    partition: int
    offset: int
    error: str | None

    def records(self) -> list[Any]: ...


def render_dead_letter(row: Mapping[str, Any], item_id: str | None) -> dict[str, Any]:
    payload: dict[str, Any] = row["payload"]
    return {
        "id": row["id"],
        "object": "usage_record_dead_letter",
        "created": row["created"],
        "livemode": row["livemode"],
        "subscriptionItem": item_id,
        "usageRecord": row["ledger_id"],
        "reason": row["reason"],
        "message": payload.get("error"),
        "period": {"start": row["period_start"], "end": payload.get("periodEnd")},
        "acceptedAt": payload.get("acceptedAt"),
        "records": [_record(r) for r in payload.get("records", [])],
    }


def _record(raw: Any) -> dict[str, Any]:
    if isinstance(raw, list) and len(raw) == 3:
        return {
            "timestamp": raw[0],
            "quantity": raw[1],
            "action": "set" if raw[2] is True else "increment",
        }
    return {"raw": raw}


async def insert_dead_letters(
    conn: asyncpg.Connection[Any], requests: Sequence[Unfoldable], reason: str
) -> None:
    """Write dead letters (and their events) inside the caller's batch transaction."""
    now = now_s()
    rows = await conn.fetch(
        "INSERT INTO usage_dead_letters (id, account_id, livemode, ledger_id, item_pk,"
        " period_start, reason, payload, created)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::boolean[], $4::text[],"
        " $5::bigint[], $6::bigint[], $7::text[], $8::jsonb[], $9::bigint[])"
        " ON CONFLICT (ledger_id) DO NOTHING RETURNING *",
        [new_id("dl") for _ in requests],
        [r.account_id for r in requests],
        [r.livemode for r in requests],
        [r.id for r in requests],
        [r.item_pk for r in requests],
        [r.period_start for r in requests],
        [reason] * len(requests),
        [
            {
                "records": r.records(),
                "periodEnd": r.period_end,
                "acceptedAt": r.accepted_at,
                "error": r.error,
                "kafka": {"partition": r.partition, "offset": r.offset},
            }
            for r in requests
        ],
        [now] * len(requests),
    )
    if not rows:
        return
    ids = {
        r["item_pk"]: r["id"]
        for r in await conn.fetch(
            "SELECT pk AS item_pk, id FROM subscription_items WHERE pk = ANY($1::bigint[])",
            list({row["item_pk"] for row in rows}),
        )
    }
    for row in rows:
        await emit_event(
            conn,
            row["account_id"],
            row["livemode"],
            "usage_record.dead_lettered",
            render_dead_letter(row, ids.get(row["item_pk"])),
        )
    log.warning("dead-lettered %d request(s): %s", len(rows), reason)


async def list_dead_letters(
    db: asyncpg.Pool | asyncpg.Connection[Any],
    *,
    item_pk: int | None = None,
    reason: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first, across accounts (the operator's view: ``vinr deadletters list``)."""
    rows = await db.fetch(
        "SELECT d.*, si.id AS item_id FROM usage_dead_letters d"
        " LEFT JOIN subscription_items si ON si.pk = d.item_pk"
        " WHERE ($1::bigint IS NULL OR d.item_pk = $1) AND ($2::text IS NULL OR d.reason = $2)"
        " ORDER BY d.created DESC, d.id DESC LIMIT $3",
        item_pk,
        reason,
        limit,
    )
    return [render_dead_letter(r, r["item_id"]) | {"account": r["account_id"]} for r in rows]
