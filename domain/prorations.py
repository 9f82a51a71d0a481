"""Prorations: what a licensed item's change in the middle of a period is worth.

Licensed items are billed in advance, so when one changes at time T of its period
``[start, end)`` the customer has paid for the old quantity and price until ``end``.
As Stripe does by default (``create_prorations``), the change queues two invoice items
for the subscription's next invoice: a credit for the unused time of the old quantity and
price, ``-old × (end − T) / (end − start)``, and a charge for the new ones over the same
remaining time, ``+new × (end − T) / (end − start)``, each rounded once, half up. An item
added mid-period gets only the charge. Both lines carry ``proration: true`` and the
period ``[T, end)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from domain.pricing import parse_price_terms, prorated_amount
from domain.store import catalog
from domain.store.subscriptions import PendingItem, insert_invoice_items
from infra.ids import new_id

__all__ = ["Holding", "queue_prorations"]


@dataclass(frozen=True, slots=True)
class Holding:
    """A licensed item's price and quantity on one side of a change."""

    price: asyncpg.Record  # the prices row
    quantity: int


def _day(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d %b %Y")


async def queue_prorations(
    conn: asyncpg.Connection[Any],
    sub: asyncpg.Record,
    item_pk: int,
    old: Holding | None,
    new: Holding | None,
    at: int,
) -> list[str]:
    """Queue the credit for ``old`` and the charge for ``new`` from ``at`` to the end of
    the subscription's current period; the invoice item ids (none when no time is left)."""
    start, end = sub["current_period_start"], sub["current_period_end"]
    remaining = end - max(at, start)
    if remaining <= 0:
        return []
    names = {
        r["id"]: r["name"]
        for r in await catalog.pricing_rows(conn, [h.price["id"] for h in (old, new) if h])
    }
    rows: list[PendingItem] = []
    for holding, sign, what in ((old, -1, "Unused"), (new, 1, "Remaining")):
        if holding is None:
            continue
        amount = prorated_amount(
            parse_price_terms(holding.price["terms"]), holding.quantity, remaining, end - start
        )
        rows.append(
            (
                new_id("ii"),
                holding.price["id"],
                f"{what} time on {holding.quantity} × {names[holding.price['id']]}"
                f" after {_day(end - remaining)}",
                holding.quantity,
                sign * amount,
            )
        )
    await insert_invoice_items(conn, sub, item_pk, rows, end - remaining, end)
    return [r[0] for r in rows]
