"""Prices as the invoice steps use them: loaded in one query and each parsed once per
transaction, the invoice lines priced from them, and what measuring a metered line asks
(usage records, or the meter the price bills)."""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.amounts import decimal_str
from domain.billing.drafts import Line
from domain.metering import Ask, MeterUse
from domain.meters import parse_formula
from domain.pricing import (
    PriceTerms,
    Quantity,
    line_amount,
    parse_price_terms,
    unit_amount_decimal_str,
)
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

    def name(self, price_id: str) -> str:
        return str(self.rows[price_id]["name"])

    def ask(
        self,
        item_pk: int,
        window_start: int,
        lo: int,
        hi: int,
        price_id: str,
        *,
        customer_pk: int,
        whole: bool,
    ) -> Ask:
        """What measuring the line ``[lo, hi)`` of the period starting ``window_start`` at
        ``price_id`` asks: the item's usage records, or, for a price billing a meter, the
        customer's usage of that meter over ``[lo, hi)``."""
        row = self.rows[price_id]
        meter = (
            None
            if row["meter_pk"] is None
            else MeterUse(row["meter_pk"], customer_pk, parse_formula(row["formula"]))
        )
        return Ask(item_pk, window_start, lo, hi, row["aggregate_usage"], whole, meter)

    def _line(self, price_id: str, quantity: Quantity) -> tuple[int, str | None]:
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

    def price(self, line: Line, quantity: Quantity) -> None:
        """Price a metered line at its measured ``quantity``."""
        assert line.price_id is not None
        line.quantity = quantity
        line.amount, line.unit_amount_decimal = self._line(line.price_id, quantity)
        text = str(quantity) if isinstance(quantity, int) else decimal_str(quantity)
        line.description = f"{text} × {self.name(line.price_id)}"
