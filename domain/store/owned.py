"""What every table family of the API shares: an account's object by id, or a 404 that
names it, and its objects newest first, one cursor page at a time. Every table the API
lists has ``id``, ``account_id``, ``livemode`` and ``created``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg

from domain.tenant import Tenant
from infra.errors import InvalidRequest, NotFound

__all__ = ["fetch_or_404", "fetch_owned", "found", "loaded_page", "page"]

_T = TypeVar("_T")


async def fetch_or_404(
    db: asyncpg.Pool | asyncpg.Connection[Any],
    query: str,
    *args: Any,
    what: str,
    ident: str,
    param: str | None = None,
) -> asyncpg.Record:
    return found(await db.fetchrow(query, *args), what=what, ident=ident, param=param)


def found(row: _T | None, *, what: str, ident: str, param: str | None = None) -> _T:
    """``row``, or the 404 that names what was asked for when there is none."""
    if row is None:
        raise NotFound(f"no such {what}: '{ident}'", param=param or "id")
    return row


async def fetch_owned(
    db: asyncpg.Pool | asyncpg.Connection[Any], table: str, t: Tenant, ident: str, *, what: str
) -> asyncpg.Record:
    """The object ``ident`` of ``table`` if it belongs to this account and mode, else 404."""
    return await fetch_or_404(
        db,
        f"SELECT * FROM {table} WHERE id = $1 AND account_id = $2 AND livemode = $3",
        ident,
        t.account_id,
        t.livemode,
        what=what,
        ident=ident,
    )


async def page(
    db: asyncpg.Pool,
    *,
    table: str,
    t: Tenant,
    limit: int,
    starting_after: str | None,
    url: str,
    render: Callable[[asyncpg.Record], dict[str, Any]],
    where: str = "",
    args: Sequence[Any] = (),
    select: str = "*",
) -> dict[str, Any]:
    """Newest first, cursor after ``starting_after`` (an id in the same list)."""
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit must be between 1 and 100", param="limit")
    params: list[Any] = [t.account_id, t.livemode, *args]
    clause = f"t.account_id = $1 AND t.livemode = $2 {where}"
    if starting_after is not None:
        params.append(starting_after)
        anchor = await db.fetchrow(
            f"SELECT created, id FROM {table} t WHERE {clause} AND t.id = ${len(params)}", *params
        )
        if anchor is None:
            raise InvalidRequest(
                f"startingAfter: no such object '{starting_after}' in this list",
                param="startingAfter",
            )
        params[-1:] = [anchor["created"], anchor["id"]]
        clause += f" AND (t.created, t.id) < (${len(params) - 1}, ${len(params)})"
    params.append(limit + 1)
    rows = await db.fetch(
        f"SELECT {select} FROM {table} t WHERE {clause}"
        f" ORDER BY t.created DESC, t.id DESC LIMIT ${len(params)}",
        *params,
    )
    return {
        "object": "list",
        "url": url,
        "hasMore": len(rows) > limit,
        "data": [render(r) for r in rows[:limit]],
    }


async def loaded_page(
    db: asyncpg.Pool,
    *,
    table: str,
    t: Tenant,
    limit: int,
    starting_after: str | None,
    url: str,
    load: Callable[[asyncpg.Pool, list[str]], Awaitable[Mapping[str, dict[str, Any]]]],
    where: str = "",
    args: Sequence[Any] = (),
) -> dict[str, Any]:
    """``page`` of ids, each object then rendered by ``load`` (id → object) in one go: for
    objects rendered with what hangs below them (an invoice's lines, a subscription's
    items)."""
    listing = await page(
        db,
        table=table,
        t=t,
        limit=limit,
        starting_after=starting_after,
        url=url,
        render=lambda r: {"id": r["id"]},
        where=where,
        args=args,
        select="t.id, t.created",
    )
    loaded = await load(db, [r["id"] for r in listing["data"]])
    listing["data"] = [loaded[r["id"]] for r in listing["data"]]
    return listing
