"""API object shapes: rows in, camelCase dicts out. Used by the API and by event payloads.

The shapes are documented in ``docs/api.md``; this module is the one place that builds them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from domain.amounts import decimal_str
from domain.meters import Number
from domain.pricing import render_stored_terms

if TYPE_CHECKING:
    from domain.accounts import ApiKey

__all__ = [
    "amount",
    "render_alert",
    "render_api_key",
    "render_charge",
    "render_customer",
    "render_delivery",
    "render_event",
    "render_invoice",
    "render_meter",
    "render_meter_event_adjustment",
    "render_meter_event_record",
    "render_meter_event_summary",
    "render_payment_method",
    "render_price",
    "render_prices",
    "render_product",
    "render_subscription",
    "render_test_clock",
    "render_webhook_endpoint",
    "shown_quantity",
]

Row = Mapping[str, Any]


def amount(value: Decimal | int | None) -> int | None:
    """numeric(38,0) columns come back as Decimal; the API speaks integers."""
    return None if value is None else int(value)


def _shown_number(value: Decimal | int) -> tuple[int | float, str]:
    """A decimal figure's two wire forms (quantities, meter values): a JSON number — an
    integer when whole, else the nearest float — and its exact decimal text."""
    exact = Decimal(value)
    if exact == exact.to_integral_value():
        return int(exact), str(int(exact))
    return float(exact), decimal_str(exact)


def shown_quantity(value: Decimal | int) -> dict[str, Any]:
    """A line's quantity as the API shows it: ``quantity`` and ``quantityDecimal``."""
    number, text = _shown_number(value)
    return {"quantity": number, "quantityDecimal": text}


def _base(row: Row, obj: str) -> dict[str, Any]:
    return {"id": row["id"], "object": obj, "created": row["created"], "livemode": row["livemode"]}


def render_product(row: Row) -> dict[str, Any]:
    return _base(row, "product") | {
        "name": row["name"],
        "description": row["description"],
        "active": row["active"],
        "metadata": row["metadata"],
    }


def render_price(row: Row) -> dict[str, Any]:
    """The pricing fields come from the stored terms through the amount codec, so every
    amount shows both its integer and its decimal form (``domain.amounts``). ``row`` carries
    ``meter_id``: the meter the price bills (``domain.store.catalog.meter_id_of``)."""
    terms = render_stored_terms(row["terms"])
    return _base(row, "price") | {
        "product": row["product_id"],
        "currency": row["currency"],
        "type": "recurring",
        "active": row["active"],
        "nickname": row["nickname"],
        "billingScheme": terms["billingScheme"],
        "unitAmount": terms["unitAmount"],
        "unitAmountDecimal": terms["unitAmountDecimal"],
        "recurring": {
            "interval": row["interval"],
            "intervalCount": row["interval_count"],
            "usageType": row["usage_type"],
            "aggregateUsage": row["aggregate_usage"],
            "meter": row["meter_id"],
        },
        "tiers": terms["tiers"],
        "tiersMode": terms["tiersMode"],
        "transformQuantity": terms["transformQuantity"],
        "metadata": row["metadata"],
    }


def render_customer(row: Row) -> dict[str, Any]:
    return _base(row, "customer") | {
        "name": row["name"],
        "email": row["email"],
        "defaultPaymentMethod": row["default_pm"],
        "invoiceSettings": {"defaultPaymentMethod": row["default_pm"]},
        "metadata": row["metadata"],
    }


def render_payment_method(row: Row) -> dict[str, Any]:
    """``row`` carries ``customer_id``."""
    return _base(row, "payment_method") | {
        "type": "card",
        "customer": row["customer_id"],
        "card": {"brand": row["brand"], "last4": row["last4"]},
    }


def render_test_clock(row: Row) -> dict[str, Any]:
    return _base(row, "test_helpers.test_clock") | {
        "name": row["name"],
        "frozenTime": row["frozen_time"],
        "status": row["status"],
    }


def render_subscription(
    row: Row, items: Sequence[Row], prices: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """``row`` carries ``customer_id``; ``prices`` maps each item's price id to its rendered
    price (``render_prices``)."""
    data = []
    for item in items:
        data.append(
            {
                "id": item["id"],
                "object": "subscription_item",
                "created": item["created"],
                "livemode": item["livemode"],
                "subscription": row["id"],
                "quantity": item["quantity"],
                "price": prices[item["price_id"]],
            }
        )
    return _base(row, "subscription") | {
        "customer": row["customer_id"],
        "status": row["status"],
        "testClock": row["test_clock_id"],
        "currency": row["currency"],
        "currentPeriodStart": row["current_period_start"],
        "currentPeriodEnd": row["current_period_end"],
        "billingCycleAnchor": row["anchor"],
        "cancelAtPeriodEnd": row["cancel_at_period_end"],
        "canceledAt": row["canceled_at"],
        "endedAt": row["ended_at"],
        "metadata": row["metadata"],
        "items": {
            "object": "list",
            "hasMore": False,
            "data": data,
            "url": f"/v1/subscription_items?subscription={row['id']}",
        },
    }


def render_prices(rows: Mapping[str, Row]) -> dict[str, dict[str, Any]]:
    """price id → rendered price, for ``render_invoice``: a batch of invoices billing the
    same prices renders each once (the renderings are shared, never mutated)."""
    return {price_id: render_price(row) for price_id, row in rows.items()}


def render_invoice(
    row: Row, lines: Sequence[Row], prices: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """``row`` carries ``customer_id``; ``prices`` maps price id → rendered price
    (``render_prices``). An invoice not stored (the upcoming one) has ``id`` None, and so
    have its lines."""
    rendered = []
    for line in lines:
        rendered.append(
            {
                "id": line["id"],
                "object": "line_item",
                "type": line["type"],
                "subscriptionItem": line.get("item_id"),
                "price": prices.get(line["price_id"]) if line["price_id"] else None,
                **shown_quantity(line["quantity"]),
                "amount": amount(line["amount"]),
                "unitAmountDecimal": line["unit_amount_decimal"],
                "currency": row["currency"],
                "description": line["description"],
                "period": {"start": line["period_start"], "end": line["period_end"]},
                "proration": bool(line.get("proration")),
            }
        )
    total = amount(row["total"]) or 0
    paid = amount(row["amount_paid"]) or 0
    return _base(row, "invoice") | {
        "customer": row["customer_id"],
        "subscription": row["subscription_id"],
        "status": row["status"],
        "currency": row["currency"],
        "billingReason": row["billing_reason"],
        "periodStart": row["period_start"],
        "periodEnd": row["period_end"],
        "subtotal": amount(row["subtotal"]),
        "total": total,
        "amountPaid": paid,
        "amountDue": total,
        "amountRemaining": total - paid,
        "attemptCount": row["attempt_count"],
        "nextPaymentAttempt": row["next_payment_attempt"],
        "finalizedAt": row["finalized_at"],
        "paidAt": row["paid_at"],
        "lines": {
            "object": "list",
            "hasMore": False,
            "data": rendered,
            "url": (
                f"/v1/invoices/{row['id']}/lines"
                if row["id"] is not None
                else f"/v1/invoices/upcoming?subscription={row['subscription_id']}"
            ),
        },
    }


def render_charge(row: Row) -> dict[str, Any]:
    return _base(row, "charge") | {
        "invoice": row["invoice_id"],
        "attempt": row["attempt"],
        "amount": amount(row["amount"]),
        "currency": row["currency"],
        "paymentMethod": row["payment_method"],
        "status": row["status"],
        "paid": row["status"] == "succeeded",
        "failureCode": row["failure_code"],
        "failureMessage": row["failure_message"],
    }


def render_meter(row: Row) -> dict[str, Any]:
    """A ``meters`` row as a ``billing.meter``."""
    return _base(row, "billing.meter") | {
        "displayName": row["display_name"],
        "eventName": row["event_name"],
        "status": row["status"],
        "defaultAggregation": {"formula": row["formula"]},
        "customerMapping": {"type": "by_id", "eventPayloadKey": row["customer_key"]},
        "valueSettings": {"eventPayloadKey": row["value_key"]},
        "statusTransitions": {
            "deactivatedAt": row["updated"] if row["status"] == "inactive" else None
        },
        "updated": row["updated"],
    }


def render_alert(row: Row, *, meter_id: str, customer_id: str | None) -> dict[str, Any]:
    """A ``billing_alerts`` row as a ``billing.alert`` (ids of its meter and customer given)."""
    return _base(row, "billing.alert") | {
        "title": row["title"],
        "alertType": "usage_threshold",
        "status": row["status"],
        "usageThreshold": {
            "meter": meter_id,
            "gte": int(row["gte"]),
            "recurrence": row["recurrence"],
        },
        "filter": None if customer_id is None else {"customer": customer_id},
    }


def render_meter_event_record(row: Row, *, meter: Row, customer_id: str) -> dict[str, Any]:
    """A ``meter_events`` row of ``meter`` as a ``billing.meter_event`` of the events list:
    what the ledger keeps of it and whether it counts (``counted``), was cancelled or was
    refused by the aggregator (``rejected``, with the reason)."""
    number, text = _shown_number(row["value"])
    if row["cancelled_at"] is not None:
        status = "cancelled"
    elif row["rejected"] is not None:
        status = "rejected"
    else:
        status = "counted"
    return {
        "object": "billing.meter_event",
        "identifier": row["identifier"],
        "eventName": meter["event_name"],
        "meter": meter["id"],
        "customer": customer_id,
        "timestamp": row["ts"],
        "created": row["accepted_at"],
        "livemode": meter["livemode"],
        "value": number,
        "valueDecimal": text,
        "status": status,
        "cancelledAt": row["cancelled_at"],
        "rejectedReason": row["rejected"],
    }


def render_meter_event_summary(
    *, summary_id: str, meter: Row, customer_id: str, start: int, end: int, value: Number
) -> dict[str, Any]:
    """A customer's usage of ``meter`` over ``[start, end)`` as a
    ``billing.meter_event_summary``."""
    number, text = _shown_number(value)
    return {
        "id": summary_id,
        "object": "billing.meter_event_summary",
        "meter": meter["id"],
        "customer": customer_id,
        "livemode": meter["livemode"],
        "startTime": start,
        "endTime": end,
        "aggregatedValue": number,
        "aggregatedValueDecimal": text,
    }


def render_meter_event_adjustment(
    *,
    adjustment_id: str,
    created: int,
    livemode: bool,
    event_name: str,
    identifier: str,
    status: str,
) -> dict[str, Any]:
    """A cancel of a meter event as a ``billing.meter_event_adjustment``."""
    return {
        "id": adjustment_id,
        "object": "billing.meter_event_adjustment",
        "created": created,
        "livemode": livemode,
        "eventName": event_name,
        "type": "cancel",
        "cancel": {"identifier": identifier},
        "status": status,
    }


def render_event(row: Row) -> dict[str, Any]:
    return _base(row, "event") | {
        "type": row["type"],
        "data": row["data"],
        "apiVersion": "2026-11-01",
    }


def render_delivery(row: Row, attempts: Sequence[Row]) -> dict[str, Any]:
    """A webhook delivery; ``row`` carries its event's ``livemode`` and endpoint's ``url``."""
    pending = row["status"] == "pending"
    return {
        "id": row["id"],
        "object": "webhook_delivery",
        "created": row["created"],
        "livemode": row["livemode"],
        "event": row["event_id"],
        "webhookEndpoint": row["endpoint_id"],
        "url": row["url"],
        "status": row["status"],
        "attemptCount": row["attempts"],
        "nextAttemptAt": int(row["next_attempt_at"]) if pending else None,
        "firstAttemptAt": row["first_attempt_at"],
        "deliveredAt": row["delivered_at"],
        "lastStatusCode": row["last_status_code"],
        "lastError": row["last_error"],
        "attempts": {
            "object": "list",
            "hasMore": False,
            "data": [
                {
                    "attempt": a["attempt"],
                    "statusCode": a["status_code"],
                    "error": a["error"],
                    "durationMs": a["duration_ms"],
                    "created": a["created"],
                }
                for a in attempts
            ],
        },
    }


def render_webhook_endpoint(row: Row, *, with_secret: bool = False) -> dict[str, Any]:
    out = _base(row, "webhook_endpoint") | {
        "url": row["url"],
        "enabledEvents": list(row["enabled_events"]),
        "status": row["status"],
        "description": row["description"],
    }
    if with_secret:
        out["secret"] = row["secret"]
    return out


def render_api_key(key: ApiKey, *, secret: str | None = None) -> dict[str, Any]:
    """An API key; ``secret`` only in the answer of the call that created it."""
    out: dict[str, Any] = {
        "id": key.id,
        "object": "api_key",
        "created": key.created,
        "livemode": key.livemode,
        "type": key.kind,
        "name": key.name,
        "hint": key.hint,
        "permissions": list(key.permissions),
        "expiresAt": key.expires_at,
        "revoked": key.revoked,
        "revokedAt": key.revoked_at,
        "status": key.status(time.time()),
    }
    if secret is not None:
        out["secret"] = secret
    return out
