"""``GET /v1/usage_records/dead_letters``: accepted usage the aggregator could not fold.

A request lands here instead of being dropped when its period was already invoiced
(``period_invoiced``) or its records were malformed (``invalid_records``); see
``domain.deadletters``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from control.common import Json, StartingAfter, fetch_or_404, page, services, tenant
from domain.deadletters import REASONS, render_dead_letter
from infra.errors import InvalidRequest

__all__ = ["router"]

router = APIRouter(tags=["usage"])


@router.get("/v1/usage_records/dead_letters")
async def list_dead_letters(
    request: Request,
    limit: int = 10,
    starting_after: StartingAfter = None,
    subscription_item: str | None = Query(default=None, alias="subscriptionItem"),
    reason: str | None = None,
) -> Json:
    """Newest first; optionally for one subscription item and/or one reason."""
    t, s = tenant(request), services(request)
    where, args = "", []
    if subscription_item is not None:
        item = await fetch_or_404(
            s.pool,
            "SELECT pk FROM subscription_items WHERE account_id = $1 AND livemode = $2 AND id = $3",
            t.account_id,
            t.livemode,
            subscription_item,
            what="subscription item",
            ident=subscription_item,
            param="subscriptionItem",
        )
        args.append(item["pk"])
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
            select="t.*, (SELECT si.id FROM subscription_items si WHERE si.pk = t.item_pk)"
            " AS item_id",
        )
    )
