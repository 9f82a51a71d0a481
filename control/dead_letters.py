"""``GET /v1/usage_records/dead_letters``: accepted usage the aggregator could not fold.

A request lands here instead of being dropped when its period was already invoiced
(``period_invoiced``) or its records were malformed (``invalid_records``); see
``domain.deadletters``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, Request

from control.common import Json, Limit, StartingAfter, services, tenant
from control.routing import api_router, error_responses
from control.schemas import DeadLetterList
from domain.deadletters import REASONS, render_dead_letter
from domain.store.owned import found, page
from domain.store.subscriptions import ITEM_ID_OF_PK, item_pk
from infra.errors import InvalidRequest

__all__ = ["router"]

router = api_router("usage")


@router.get(
    "/v1/usage_records/dead_letters", response_model=DeadLetterList, responses=error_responses(404)
)
async def list_dead_letters(
    request: Request,
    limit: Limit = 10,
    starting_after: StartingAfter = None,
    subscription_item: Annotated[str | None, Query(alias="subscriptionItem")] = None,
    reason: Annotated[str | None, Query(json_schema_extra={"enum": list(REASONS)})] = None,
) -> Json:
    """Newest first; optionally for one subscription item and/or one reason."""
    t, s = tenant(request), services(request)
    where = ""
    args: list[Any] = []
    if subscription_item is not None:
        pk = found(
            await item_pk(s.pool, t, subscription_item),
            what="subscription item",
            ident=subscription_item,
            param="subscriptionItem",
        )
        args.append(pk)
        where += f" AND t.item_pk = ${len(args) + 2}"
    if reason is not None:
        if reason not in REASONS:
            raise InvalidRequest(f"reason must be one of: {', '.join(REASONS)}", param="reason")
        args.append(reason)
        where += f" AND t.reason = ${len(args) + 2}"

    def render(row: Any) -> dict[str, Any]:
        return render_dead_letter(row, row["item_id"])

    return Json(
        await page(
            s.pool,
            table="usage_dead_letters",
            t=t,
            limit=limit,
            starting_after=starting_after,
            url="/v1/usage_records/dead_letters",
            render=render,
            where=where,
            args=args,
            select=f"t.*, {ITEM_ID_OF_PK}",
        )
    )
