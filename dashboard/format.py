"""How the Dashboard writes numbers, money and times (Jinja filters): amounts through
``domain.currencies``, times in UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.amounts import PriceDefinitionError
from domain.currencies import format_amount, format_unit_amount

__all__ = ["FILTERS"]


def money(amount_minor: int | None, currency: str) -> str:
    if amount_minor is None:
        return "—"
    try:
        return format_amount(int(amount_minor), currency)
    except PriceDefinitionError:
        return f"{amount_minor} {currency.upper()} (minor units)"


def unit_amount(decimal_minor: str | None, currency: str) -> str:
    if decimal_minor is None:
        return "—"
    try:
        return format_unit_amount(decimal_minor, currency)
    except PriceDefinitionError:
        return f"{decimal_minor} {currency.upper()} (minor units)"


def number(value: int | None) -> str:
    return "—" if value is None else f"{int(value):,}"


def quantity(text: str) -> str:
    """An exact decimal quantity with thousands separators: ``"12345.5"`` → ``12,345.5``."""
    whole, _, fraction = text.partition(".")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def when(ts: int | float | None) -> str:
    """A time as people read it: ``2026-01-01 00:00 UTC``."""
    if ts is None:
        return "—"
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%d %H:%M UTC")


def day(ts: int | float | None) -> str:
    """A short date for chart axes: ``1 Jan``."""
    if ts is None:
        return "—"
    moment = datetime.fromtimestamp(int(ts), UTC)
    return f"{moment.day} {moment:%b}"


def iso(ts: int | float | None) -> str:
    """The ``datetime`` attribute of a ``<time>`` element."""
    if ts is None:
        return ""
    return datetime.fromtimestamp(int(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def price_terms(price: dict[str, Any] | None) -> str:
    """A price in a few words: "€0.002 per unit · sum of usage · monthly"."""
    if price is None:
        return "—"
    recurring = price.get("recurring") or {}
    parts: list[str] = []
    if price.get("unitAmountDecimal") is not None and not price.get("tiers"):
        parts.append(f"{unit_amount(price['unitAmountDecimal'], price['currency'])} per unit")
    elif price.get("tiers"):
        parts.append(f"tiered ({price.get('tiersMode') or 'graduated'})")
    if recurring.get("usageType") == "metered":
        parts.append(f"{recurring.get('aggregateUsage') or 'sum'} of usage")
    else:
        parts.append("licensed")
    count, interval = recurring.get("intervalCount") or 1, recurring.get("interval") or "month"
    parts.append(f"every {count} {interval}s" if count != 1 else f"{interval}ly")
    return " · ".join(parts)


FILTERS = {
    "money": money,
    "unit_amount": unit_amount,
    "number": number,
    "quantity": quantity,
    "when": when,
    "day": day,
    "iso": iso,
    "price_terms": price_terms,
}
