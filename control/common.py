"""What every control-plane route shares: the request model base, tenant and services
lookup, JSON responses, list pagination and "fetch or 404"."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import asyncpg
import orjson
from fastapi import Query, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    TypeAdapter,
    ValidationError,
)
from starlette.responses import Response

from domain.accounts import Tenant
from domain.services import Services
from infra.errors import InvalidRequest, NotFound

__all__ = [
    "ApiModel",
    "HttpUrlAsWritten",
    "Json",
    "StartingAfter",
    "fetch_or_404",
    "fetch_owned",
    "found",
    "page",
    "services",
    "tenant",
]


_T = TypeVar("_T")

StartingAfter = Annotated[str | None, Query(alias="startingAfter")]


class ApiModel(BaseModel):
    """Request bodies: camelCase as the guide writes them; unknown parameters are refused."""

    model_config = ConfigDict(extra="forbid")


_HTTP_URL = TypeAdapter(HttpUrl)


def _checked_url(value: str) -> str:
    try:
        _HTTP_URL.validate_python(value)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"]) from None
    return value


# An http(s) URL kept as the caller wrote it (pydantic's HttpUrl would add a "/" and lowercase
# the host), so it reads back, and is called, exactly as given.
HttpUrlAsWritten = Annotated[str, Field(max_length=2083), AfterValidator(_checked_url)]


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def tenant(request: Request) -> Tenant:
    value: Tenant = request.scope["state"]["tenant"]
    return value


def services(request: Request) -> Services:
    value: Services = request.app.state.services
    return value


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


def pick(row: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: row[k] for k in keys}
