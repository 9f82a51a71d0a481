"""Typed models of the API (``docs/api.md``): request parameters and response objects.

Parameters are ``TypedDict``s that type the resource methods' keyword arguments
(``**params: Unpack[PriceCreateParams]``), so a type checker catches a misspelt field or a
wrong type; at run time the arguments go out as they are. Responses are ``VinrObject``s (a
``dict`` with attribute access); the object models below describe them, for ``cast`` or
annotations: ``price = cast(Price, vinr.prices.create(...))``.
"""

from __future__ import annotations

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
    intervalCount: NotRequired[int]
    usageType: NotRequired[Literal["licensed", "metered"]]
    aggregateUsage: NotRequired[AggregateUsage | None]


class Tier(TypedDict):
    upTo: int | Literal["inf"]
    unitAmount: NotRequired[int | None]
    unitAmountDecimal: NotRequired[str | None]
    flatAmount: NotRequired[int | None]
    flatAmountDecimal: NotRequired[str | None]


class TransformQuantity(TypedDict):
    divideBy: int
    round: Literal["up", "down"]


class ProductCreateParams(TypedDict):
    name: str
    description: NotRequired[str]
    metadata: NotRequired[dict[str, str]]


class PriceCreateParams(TypedDict):
    product: str
    currency: str
    recurring: Recurring
    billingScheme: NotRequired[Literal["per_unit", "tiered", "usage"]]
    unitAmount: NotRequired[int]
    unitAmountDecimal: NotRequired[str]
    tiers: NotRequired[list[Tier]]
    tiersMode: NotRequired[Literal["graduated", "volume"]]
    transformQuantity: NotRequired[TransformQuantity]


class CustomerCreateParams(TypedDict, total=False):
    id: str
    name: str
    email: str
    paymentMethod: str
    metadata: dict[str, str]


class CustomerUpdateParams(TypedDict, total=False):
    name: str
    email: str
    paymentMethod: str
    metadata: dict[str, str]


class SubscriptionItemParams(TypedDict):
    price: str
    quantity: NotRequired[int]
    id: NotRequired[str]


class SubscriptionCreateParams(TypedDict):
    customer: str
    items: list[SubscriptionItemParams]
    testClock: NotRequired[str]
    cancelAtPeriodEnd: NotRequired[bool]
    metadata: NotRequired[dict[str, str]]


class SubscriptionUpdateParams(TypedDict, total=False):
    cancelAtPeriodEnd: bool
    metadata: dict[str, str]


class UsageRecordParams(TypedDict):
    quantity: int
    timestamp: NotRequired[int]
    action: NotRequired[Action]


class UsageRecordCreateParams(UsageRecordParams):
    subscriptionItem: str


class UsageRecordBatchParams(TypedDict):
    subscriptionItem: str
    records: list[UsageRecordParams]


class TestClockCreateParams(TypedDict):
    frozenTime: int
    name: NotRequired[str]


class TestClockAdvanceParams(TypedDict):
    frozenTime: int


class WebhookEndpointCreateParams(TypedDict):
    url: str
    enabledEvents: list[str]
    description: NotRequired[str]


class WebhookEndpointUpdateParams(TypedDict, total=False):
    url: str
    enabledEvents: list[str]
    description: str | None
    status: Literal["enabled", "disabled"]


class EventResendParams(TypedDict, total=False):
    webhookEndpoint: str


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


class Price(_Object):
    product: str
    currency: str
    type: str
    active: bool
    billingScheme: Literal["per_unit", "tiered"]
    unitAmount: int | None
    unitAmountDecimal: str | None
    recurring: Recurring
    tiers: list[Tier] | None
    tiersMode: Literal["graduated", "volume"] | None
    transformQuantity: TransformQuantity | None


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
