"""Typed models of the API: request parameters and response objects.

Parameters are ``TypedDict``s in Python's snake_case that type the resource methods' keyword
arguments (``**params: Unpack[PriceCreateParams]``), nested ones included (``Recurring``,
``Tier``), so a type checker catches a misspelt field or a wrong type; at run time every key
goes out in the API's camelCase (``unit_amount_decimal`` → ``unitAmountDecimal``).

Responses are ``VinrObject``s: read them by attribute in snake_case
(``price.unit_amount_decimal``) or by subscript with the API's own keys
(``price["unitAmountDecimal"]``). The object models below describe those keys, the wire
shape, for ``cast`` and annotations: ``price = cast(Price, vinr.prices.create(...))``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "Action",
    "AggregateUsage",
    "Charge",
    "Customer",
    "CustomerCreateParams",
    "CustomerUpdateParams",
    "DeletedObject",
    "Event",
    "EventResendParams",
    "Interval",
    "Invoice",
    "InvoiceLine",
    "ListObject",
    "Period",
    "Price",
    "PriceCreateParams",
    "PriceRecurring",
    "PriceTier",
    "PriceTransformQuantity",
    "Product",
    "ProductCreateParams",
    "Recurring",
    "Subscription",
    "SubscriptionCreateParams",
    "SubscriptionItem",
    "SubscriptionItemParams",
    "SubscriptionUpdateParams",
    "TestClock",
    "TestClockAdvanceParams",
    "TestClockCreateParams",
    "Tier",
    "TransformQuantity",
    "UsageRecord",
    "UsageRecordBatch",
    "UsageRecordBatchParams",
    "UsageRecordCreateParams",
    "UsageRecordParams",
    "UsageRecordSummary",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEndpointCreateParams",
    "WebhookEndpointUpdateParams",
]

Interval = Literal["day", "week", "month", "year"]
AggregateUsage = Literal["sum", "last_during_period", "last_ever", "max"]
Action = Literal["increment", "set"]


# ---- parameters ---------------------------------------------------------------------------


class Recurring(TypedDict):
    interval: Interval
    interval_count: NotRequired[int]
    usage_type: NotRequired[Literal["licensed", "metered"]]
    aggregate_usage: NotRequired[AggregateUsage | None]


class Tier(TypedDict):
    up_to: int | Literal["inf"]
    unit_amount: NotRequired[int | None]
    unit_amount_decimal: NotRequired[str | Decimal | None]
    flat_amount: NotRequired[int | None]
    flat_amount_decimal: NotRequired[str | Decimal | None]


class TransformQuantity(TypedDict):
    divide_by: int
    round: Literal["up", "down"]


class ProductCreateParams(TypedDict):
    name: str
    description: NotRequired[str]
    metadata: NotRequired[dict[str, str]]


class PriceCreateParams(TypedDict):
    product: str
    currency: str
    recurring: Recurring
    billing_scheme: NotRequired[Literal["per_unit", "tiered", "usage"]]
    unit_amount: NotRequired[int]
    unit_amount_decimal: NotRequired[str | Decimal]
    tiers: NotRequired[list[Tier]]
    tiers_mode: NotRequired[Literal["graduated", "volume"]]
    transform_quantity: NotRequired[TransformQuantity]


class CustomerCreateParams(TypedDict, total=False):
    id: str
    name: str
    email: str
    payment_method: str
    metadata: dict[str, str]


class CustomerUpdateParams(TypedDict, total=False):
    name: str
    email: str
    payment_method: str
    metadata: dict[str, str]


class SubscriptionItemParams(TypedDict):
    price: str
    quantity: NotRequired[int]
    id: NotRequired[str]


class SubscriptionCreateParams(TypedDict):
    customer: str
    items: list[SubscriptionItemParams]
    test_clock: NotRequired[str]
    cancel_at_period_end: NotRequired[bool]
    metadata: NotRequired[dict[str, str]]


class SubscriptionUpdateParams(TypedDict, total=False):
    cancel_at_period_end: bool
    metadata: dict[str, str]


class UsageRecordParams(TypedDict):
    quantity: int
    timestamp: NotRequired[int]
    action: NotRequired[Action]


class UsageRecordCreateParams(UsageRecordParams):
    subscription_item: str


class UsageRecordBatchParams(TypedDict):
    subscription_item: str
    records: list[UsageRecordParams]


class TestClockCreateParams(TypedDict):
    frozen_time: int
    name: NotRequired[str]


class TestClockAdvanceParams(TypedDict):
    frozen_time: int


class WebhookEndpointCreateParams(TypedDict):
    url: str
    enabled_events: list[str]
    description: NotRequired[str]


class WebhookEndpointUpdateParams(TypedDict, total=False):
    url: str
    enabled_events: list[str]
    description: str | None
    status: Literal["enabled", "disabled"]


class EventResendParams(TypedDict, total=False):
    webhook_endpoint: str


# ---- objects ------------------------------------------------------------------------------


class _Object(TypedDict):
    id: str
    object: str
    created: int
    livemode: bool


class ListObject(TypedDict):
    object: Literal["list"]
    data: list[Any]
    hasMore: bool
    url: str


class DeletedObject(TypedDict):
    id: str
    object: str
    deleted: Literal[True]


class Period(TypedDict):
    start: int
    end: int


class Product(_Object):
    name: str
    description: str | None
    active: bool
    metadata: dict[str, str]


class PriceRecurring(TypedDict):
    """``Price.recurring`` as the API sends it (the parameter is ``Recurring``)."""

    interval: Interval
    intervalCount: int
    usageType: Literal["licensed", "metered"]
    aggregateUsage: AggregateUsage | None


class PriceTier(TypedDict):
    upTo: int | Literal["inf"]
    unitAmount: int | None
    unitAmountDecimal: str | None
    flatAmount: int | None
    flatAmountDecimal: str | None


class PriceTransformQuantity(TypedDict):
    divideBy: int
    round: Literal["up", "down"]


class Price(_Object):
    product: str
    currency: str
    type: str
    active: bool
    billingScheme: Literal["per_unit", "tiered"]
    unitAmount: int | None
    unitAmountDecimal: str | None
    recurring: PriceRecurring
    tiers: list[PriceTier] | None
    tiersMode: Literal["graduated", "volume"] | None
    transformQuantity: PriceTransformQuantity | None


class Customer(_Object):
    name: str | None
    email: str | None
    defaultPaymentMethod: str | None
    metadata: dict[str, str]


class SubscriptionItem(_Object):
    subscription: str
    quantity: int | None
    price: Price


class Subscription(_Object):
    customer: str
    status: str
    testClock: str | None
    currentPeriodStart: int
    currentPeriodEnd: int
    cancelAtPeriodEnd: bool
    canceledAt: int | None
    items: ListObject


class UsageRecord(_Object):
    subscriptionItem: str
    quantity: int
    timestamp: int
    action: Action


class UsageRecordBatch(_Object):
    subscriptionItem: str
    count: int
    data: list[UsageRecord]


class UsageRecordSummary(TypedDict):
    id: str
    object: Literal["usage_record_summary"]
    livemode: bool
    subscriptionItem: str
    totalUsage: int
    period: Period
    invoice: str | None


class InvoiceLine(TypedDict):
    id: str
    object: Literal["line_item"]
    type: str
    subscriptionItem: str | None
    price: Price | None
    quantity: int | None
    amount: int | None
    unitAmountDecimal: str | None
    currency: str
    description: str | None
    period: Period


class Invoice(_Object):
    customer: str
    subscription: str | None
    status: Literal["draft", "open", "paid", "uncollectible", "void"]
    currency: str
    periodStart: int
    periodEnd: int
    subtotal: int | None
    total: int
    amountDue: int
    amountPaid: int
    attemptCount: int
    nextPaymentAttempt: int | None
    billingReason: str | None
    lines: ListObject


class Charge(_Object):
    invoice: str
    amount: int
    currency: str
    paymentMethod: str | None
    status: str
    paid: bool
    failureCode: str | None
    failureMessage: str | None


class TestClock(_Object):
    name: str | None
    frozenTime: int
    status: str


class Event(_Object):
    type: str
    data: dict[str, Any]


class WebhookEndpoint(_Object):
    url: str
    enabledEvents: list[str]
    status: Literal["enabled", "disabled", "failing"]
    description: str | None
    secret: NotRequired[str]


class WebhookAttempt(TypedDict):
    attempt: int
    statusCode: int | None
    error: str | None
    durationMs: int
    created: int


class WebhookDelivery(_Object):
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
    attempts: ListObject
