"""Prices as the invoice steps use them: loaded in one query and each parsed once per
transaction, and the invoice lines priced from them."""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.billing.drafts import Line
from domain.pricing import PriceTerms, line_amount, parse_price_terms, unit_amount_decimal_str
from domain.store import catalog

__all__ = ["PriceBook"]


class PriceBook:
    """Parsed price terms and display names, each price parsed once per transaction."""

    def __init__(self) -> None:
        self._terms: dict[str, PriceTerms] = {}
        self.rows: dict[str, asyncpg.Record] = {}

    async def load(self, conn: asyncpg.Connection[Any], price_ids: set[str]) -> None:
        missing = [p for p in price_ids if p not in self.rows]
        if missing:
            for r in await catalog.pricing_rows(conn, missing):
                self.rows[r["id"]] = r

    def terms(self, price_id: str) -> PriceTerms:
        terms = self._terms.get(price_id)
        if terms is None:
            terms = self._terms[price_id] = parse_price_terms(self.rows[price_id]["terms"])
        return terms

    def aggregate(self, price_id: str) -> str | None:
        """A metered price's ``aggregateUsage``."""
        aggregate: str | None = self.rows[price_id]["aggregate_usage"]
        return aggregate

    def name(self, price_id: str) -> str:
        return str(self.rows[price_id]["name"])

    def _line(self, price_id: str, quantity: int) -> tuple[int, str | None]:
        terms = self.terms(price_id)
        return line_amount(terms, quantity), unit_amount_decimal_str(terms)

    def licensed(self, item: asyncpg.Record, lo: int, hi: int) -> Line:
        """A licensed item's line for ``[lo, hi)``, billed in advance."""
        quantity = item["quantity"] or 0
        amount, unit = self._line(item["price_id"], quantity)
        return Line(
            "subscription",
            item["pk"],
            item["price_id"],
            f"{quantity} × {self.name(item['price_id'])} (in advance)",
            quantity,
            unit,
            amount,
            lo,
            hi,
        )

    def metered(self, item_pk: int, price_id: str, lo: int, hi: int) -> Line:
        """A metered line for ``[lo, hi)``, to be priced (``price``) once measured."""
        return Line("subscription", item_pk, price_id, "", 0, None, 0, lo, hi)

    def price(self, line: Line, quantity: int) -> None:
        """Price a metered line at its measured ``quantity``."""
        assert line.price_id is not None
        line.quantity = quantity
        line.amount, line.unit_amount_decimal = self._line(line.price_id, quantity)
        line.description = f"{quantity} × {self.name(line.price_id)}"
