"""The objects the control plane answers, as the OpenAPI document describes them.

Documentation only: handlers answer what ``domain.objects`` renders, and these models say
what that is (``extra="forbid"``: a field the renderer adds and this file does not name is
a difference the fuzzing tests report). Keep them in step with ``domain.objects``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from domain.deadletters import REASONS
from domain.events import EVENT_TYPES
from domain.meters import FORMULAS

__all__ = [
    "Alert",
    "AlertList",
    "ApiKey",
    "ApiKeyList",
    "ApiKeyWithSecret",
    "Charge",
    "ChargeList",
    "Customer",
    "CustomerList",
    "DeadLetterList",
    "DeletedWebhookEndpoint",
    "Event",
    "EventList",
    "Invoice",
    "InvoiceList",
    "Meter",
    "MeterEventAdjustment",
    "MeterEventRecordList",
    "MeterEventSummaryList",
    "MeterList",
    "PaymentMethod",
    "Price",
    "PriceList",
    "Product",
    "ProductList",
    "Subscription",
    "SubscriptionList",
    "TestClock",
    "UpcomingInvoice",
    "UsageRecordSummaryList",
    "WebhookDeliveryList",
    "WebhookEndpoint",
    "WebhookEndpointList",
    "WebhookEndpointWithSecret",
]


def _enum(values: Iterable[str]) -> list[JsonValue]:
    return list(sorted(values))


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Object(_Shape):
    id: str
    created: int
    livemode: bool


class _List(_Shape):
    object: Literal["list"]
    url: str
    hasMore: bool


class Period(_Shape):
    start: int
    end: int


class Product(_Object):
    object: Literal["product"]
    name: str
    description: str | None
    active: bool
    metadata: dict[str, str]


class Recurring(_Shape):
    interval: Literal["day", "week", "month", "year"]
    intervalCount: int
    usageType: Literal["licensed", "metered"]
    aggregateUsage: Literal["sum", "last_during_period", "last_ever", "max"] | None
    meter: str | None = Field(description="the billing meter the price bills (mtr_…), or null")


class Tier(_Shape):
    upTo: int | Literal["inf"]
    unitAmount: int | None
    unitAmountDecimal: str
    flatAmount: int | None
    flatAmountDecimal: str


class TransformQuantity(_Shape):
    divideBy: int
    round: Literal["up", "down"]


class Price(_Object):
    object: Literal["price"]
    product: str
    currency: str
    type: Literal["recurring"]
    active: bool
    nickname: str | None
    billingScheme: Literal["per_unit", "tiered"]
    unitAmount: int | None
    unitAmountDecimal: str | None
    recurring: Recurring
    tiers: list[Tier] | None
    tiersMode: Literal["graduated", "volume"] | None
    transformQuantity: TransformQuantity | None
    metadata: dict[str, str]


class InvoiceSettings(_Shape):
    defaultPaymentMethod: str | None


class Customer(_Object):
    object: Literal["customer"]
    name: str | None
    email: str | None
    defaultPaymentMethod: str | None
    invoiceSettings: InvoiceSettings
    metadata: dict[str, str]


class Card(_Shape):
    brand: str
    last4: str


class PaymentMethod(_Object):
    object: Literal["payment_method"]
    type: Literal["card"]
    customer: str
    card: Card


class TestClock(_Object):
    __test__ = False  # not a test class, whatever pytest thinks of the name
    object: Literal["test_helpers.test_clock"]
    name: str | None
    frozenTime: int
    status: Literal["ready", "advancing"]


class SubscriptionItem(_Object):
    object: Literal["subscription_item"]
    subscription: str
    quantity: int | None
    price: Price


class SubscriptionItemList(_List):
    data: list[SubscriptionItem]


class Subscription(_Object):
    object: Literal["subscription"]
    customer: str
    status: Literal["active", "past_due", "unpaid", "canceled", "trialing"]
    testClock: str | None
    currency: str
    currentPeriodStart: int
    currentPeriodEnd: int
    billingCycleAnchor: int
    cancelAtPeriodEnd: bool
    canceledAt: int | None
    endedAt: int | None
    metadata: dict[str, str]
    items: SubscriptionItemList


class LineItem(_Shape):
    id: str | None = Field(description="null on the upcoming invoice")
    object: Literal["line_item"]
    type: Literal["subscription", "invoiceitem"]
    subscriptionItem: str | None
    price: Price | None
    quantity: int | float = Field(description="a JSON number: an integer when whole")
    quantityDecimal: str = Field(description="the exact quantity as a decimal string")
    amount: int
    unitAmountDecimal: str | None
    currency: str
    description: str
    period: Period
    proration: bool


class LineItemList(_List):
    data: list[LineItem]


class Invoice(_Object):
    object: Literal["invoice"]
    customer: str
    subscription: str | None
    status: Literal["draft", "open", "paid", "uncollectible", "void"]
    currency: str
    billingReason: Literal["subscription_create", "subscription_cycle", "subscription_cancel"]
    periodStart: int
    periodEnd: int
    subtotal: int
    total: int
    amountPaid: int
    amountDue: int
    amountRemaining: int
    attemptCount: int
    nextPaymentAttempt: int | None
    finalizedAt: int | None
    paidAt: int | None
    lines: LineItemList


class UpcomingInvoice(Invoice):
    """What the current period would be invoiced now: not stored, so without id."""

    id: None  # type: ignore[assignment]
    status: Literal["draft"]


class Charge(_Object):
    object: Literal["charge"]
    invoice: str
    attempt: int
    amount: int
    currency: str
    paymentMethod: str
    status: Literal["succeeded", "failed"]
    paid: bool
    failureCode: str | None
    failureMessage: str | None


class Event(_Object):
    object: Literal["event"]
    type: str = Field(json_schema_extra={"enum": _enum(EVENT_TYPES)})
    data: dict[str, Any]
    apiVersion: str


class WebhookEndpoint(_Object):
    object: Literal["webhook_endpoint"]
    url: str
    enabledEvents: list[str]
    status: Literal["enabled", "disabled", "failing"]
    description: str | None


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str


class DeletedWebhookEndpoint(_Shape):
    id: str
    object: Literal["webhook_endpoint"]
    deleted: Literal[True]


class WebhookAttempt(_Shape):
    attempt: int
    statusCode: int | None
    error: str | None
    durationMs: int
    created: int


class WebhookAttemptList(_Shape):
    object: Literal["list"]
    hasMore: bool
    data: list[WebhookAttempt]


class WebhookDelivery(_Object):
    object: Literal["webhook_delivery"]
    event: str
    webhookEndpoint: str
    url: str
    status: Literal["pending", "delivered", "failed", "canceled"]
    attemptCount: int
    nextAttemptAt: int | None
    firstAttemptAt: int | None
    deliveredAt: int | None
    lastStatusCode: int | None
    lastError: str | None
    attempts: WebhookAttemptList


class UsageRecordSummary(_Shape):
    id: str
    object: Literal["usage_record_summary"]
    livemode: bool
    subscriptionItem: str
    totalUsage: int
    period: Period
    invoice: str | None


class DeadLetterRecord(_Shape):
    timestamp: Any
    quantity: Any
    action: Literal["increment", "set"]


class UnreadableRecord(_Shape):
    raw: Any


class DeadLetterPeriod(_Shape):
    start: int
    end: int | None


class DeadLetter(_Object):
    object: Literal["usage_record_dead_letter"]
    subscriptionItem: str | None
    usageRecord: str
    reason: str = Field(json_schema_extra={"enum": _enum(REASONS)})
    message: str | None
    period: DeadLetterPeriod
    acceptedAt: int | None
    records: list[DeadLetterRecord | UnreadableRecord]


class ProductList(_List):
    data: list[Product]


class PriceList(_List):
    data: list[Price]


class CustomerList(_List):
    data: list[Customer]


class SubscriptionList(_List):
    data: list[Subscription]


class InvoiceList(_List):
    data: list[Invoice]


class ChargeList(_List):
    data: list[Charge]


class EventList(_List):
    data: list[Event]


class ApiKey(_Object):
    object: Literal["api_key"]
    type: Literal["secret", "restricted"]
    name: str | None
    hint: str
    permissions: list[str]
    expiresAt: int | None
    revoked: bool
    revokedAt: int | None
    status: Literal["active", "expired", "revoked"]


class ApiKeyWithSecret(ApiKey):
    # null in an idempotent replay: the secret is shown once.
    secret: str | None


class ApiKeyList(_List):
    data: list[ApiKey]


class WebhookEndpointList(_List):
    data: list[WebhookEndpoint]


class WebhookDeliveryList(_List):
    data: list[WebhookDelivery]


class UsageRecordSummaryList(_List):
    data: list[UsageRecordSummary]


class DeadLetterList(_List):
    data: list[DeadLetter]


class MeterAggregation(_Shape):
    formula: str = Field(json_schema_extra={"enum": _enum(FORMULAS)})


class MeterCustomerMapping(_Shape):
    type: Literal["by_id"]
    eventPayloadKey: str


class MeterValueSettings(_Shape):
    eventPayloadKey: str


class MeterStatusTransitions(_Shape):
    deactivatedAt: int | None


class Meter(_Object):
    object: Literal["billing.meter"]
    updated: int
    displayName: str
    eventName: str
    status: Literal["active", "inactive"]
    defaultAggregation: MeterAggregation
    customerMapping: MeterCustomerMapping
    valueSettings: MeterValueSettings
    statusTransitions: MeterStatusTransitions


class MeterList(_List):
    data: list[Meter]


class MeterEventSummary(_Shape):
    id: str
    object: Literal["billing.meter_event_summary"]
    meter: str
    customer: str
    livemode: bool
    startTime: int
    endTime: int
    aggregatedValue: int | float
    aggregatedValueDecimal: str


class MeterEventSummaryList(_List):
    data: list[MeterEventSummary]


class MeterEventRecord(_Shape):
    object: Literal["billing.meter_event"]
    identifier: str
    eventName: str
    meter: str
    customer: str
    timestamp: int
    created: int | None
    livemode: bool
    value: int | float
    valueDecimal: str
    status: Literal["counted", "cancelled", "rejected"]
    cancelledAt: int | None
    rejectedReason: str | None


class MeterEventRecordList(_List):
    data: list[MeterEventRecord]


class MeterEventCancel(_Shape):
    identifier: str


class MeterEventAdjustment(_Object):
    object: Literal["billing.meter_event_adjustment"]
    eventName: str
    type: Literal["cancel"]
    cancel: MeterEventCancel
    status: Literal["complete", "pending"]


class AlertUsageThreshold(_Shape):
    meter: str
    gte: int
    recurrence: Literal["one_time"]


class AlertFilter(_Shape):
    customer: str


class Alert(_Object):
    object: Literal["billing.alert"]
    title: str
    alertType: Literal["usage_threshold"]
    status: Literal["active", "inactive", "archived"]
    usageThreshold: AlertUsageThreshold
    filter: AlertFilter | None


class AlertList(_List):
    data: list[Alert]
