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
    "BillingAlert",
    "BillingAlertCreateParams",
    "BillingAlertFilter",
    "BillingAlertFilterParams",
    "BillingAlertTriggered",
    "BillingAlertUsageThreshold",
    "BillingAlertUsageThresholdParams",
    "BillingMeter",
    "BillingMeterCreateParams",
    "BillingMeterCustomerMapping",
    "BillingMeterCustomerMappingParams",
    "BillingMeterDefaultAggregation",
    "BillingMeterDefaultAggregationParams",
    "BillingMeterEvent",
    "BillingMeterEventAdjustment",
    "BillingMeterEventAdjustmentCancel",
    "BillingMeterEventAdjustmentCancelParams",
    "BillingMeterEventAdjustmentCreateParams",
    "BillingMeterEventBatch",
    "BillingMeterEventBatchParams",
    "BillingMeterEventCreateParams",
    "BillingMeterEventListParams",
    "BillingMeterEventParams",
    "BillingMeterEventSummary",
    "BillingMeterEventSummaryListParams",
    "BillingMeterListedEvent",
    "BillingMeterStatusTransitions",
    "BillingMeterUpdateParams",
    "BillingMeterValueSettings",
    "BillingMeterValueSettingsParams",
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
    "InvoiceUpcomingParams",
    "ListObject",
    "MeterFormula",
    "MeterPayload",
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
    "UpcomingInvoice",
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
MeterFormula = Literal["sum", "count", "last", "max"]
MeterPayload = dict[str, str | int | Decimal]
"""A meter event's payload: the customer id under the meter's customer key, the value (an
integer or a decimal string, at most 12 places) under its value key; keys sent as given."""


# ---- parameters ---------------------------------------------------------------------------


class Recurring(TypedDict):
    interval: Interval
    interval_count: NotRequired[int]
    usage_type: NotRequired[Literal["licensed", "metered"]]
    aggregate_usage: NotRequired[AggregateUsage | None]
    meter: NotRequired[str]
    """A ``mtr_…`` id: the price bills that meter (``usage_type="metered"``, no
    ``aggregate_usage``)."""


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


class InvoiceUpcomingParams(TypedDict):
    subscription: str


class BillingMeterDefaultAggregationParams(TypedDict):
    formula: MeterFormula


class BillingMeterCustomerMappingParams(TypedDict):
    type: Literal["by_id"]
    event_payload_key: str


class BillingMeterValueSettingsParams(TypedDict):
    event_payload_key: str


class BillingMeterCreateParams(TypedDict):
    display_name: str
    event_name: str
    default_aggregation: BillingMeterDefaultAggregationParams
    customer_mapping: NotRequired[BillingMeterCustomerMappingParams]
    value_settings: NotRequired[BillingMeterValueSettingsParams]


class BillingMeterUpdateParams(TypedDict):
    display_name: str


class BillingMeterEventSummaryListParams(TypedDict):
    customer: str
    start_time: int
    end_time: int
    value_grouping_window: NotRequired[Literal["hour", "day"]]


class BillingMeterEventListParams(TypedDict):
    customer: str
    limit: NotRequired[int]
    starting_after: NotRequired[str]


class BillingMeterEventParams(TypedDict):
    event_name: str
    payload: MeterPayload
    identifier: NotRequired[str]
    """1–100 characters, the unit of deduplication; the API makes one when absent."""
    timestamp: NotRequired[int]
    """Unix seconds; the API's now when absent."""


class BillingMeterEventCreateParams(BillingMeterEventParams):
    """``meter_events.create``: one event, as an element of ``create_batch(events=…)``."""


class BillingMeterEventBatchParams(TypedDict):
    events: list[BillingMeterEventParams]


class BillingMeterEventAdjustmentCancelParams(TypedDict):
    identifier: str


class BillingMeterEventAdjustmentCreateParams(TypedDict):
    event_name: str
    type: Literal["cancel"]
    cancel: BillingMeterEventAdjustmentCancelParams


class BillingAlertUsageThresholdParams(TypedDict):
    meter: str
    gte: int
    recurrence: Literal["one_time"]


class BillingAlertFilterParams(TypedDict):
    customer: str


class BillingAlertCreateParams(TypedDict):
    title: str
    alert_type: Literal["usage_threshold"]
    usage_threshold: BillingAlertUsageThresholdParams
    filter: NotRequired[BillingAlertFilterParams]


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
    meter: str | None
    """The ``mtr_…`` id the price bills, or null."""


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
    quantity: int | float | None
    """A JSON number; a meter's quantity may be decimal — exact in ``quantityDecimal``."""
    quantityDecimal: str | None
    amount: int | None
    unitAmountDecimal: str | None
    currency: str
    description: str | None
    period: Period


class _InvoiceFields(TypedDict):
    object: Literal["invoice"]
    created: int
    livemode: bool
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


class Invoice(_InvoiceFields):
    id: str


class UpcomingInvoice(_InvoiceFields):
    """``invoices.upcoming``: an invoice as the period's close would build it now, not
    stored (``id`` null, ``status`` ``"draft"``)."""

    id: None


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


class BillingMeterDefaultAggregation(TypedDict):
    formula: MeterFormula


class BillingMeterCustomerMapping(TypedDict):
    type: Literal["by_id"]
    eventPayloadKey: str


class BillingMeterValueSettings(TypedDict):
    eventPayloadKey: str


class BillingMeterStatusTransitions(TypedDict):
    deactivatedAt: int | None


class BillingMeter(_Object):
    updated: int
    displayName: str
    eventName: str
    status: Literal["active", "inactive"]
    defaultAggregation: BillingMeterDefaultAggregation
    customerMapping: BillingMeterCustomerMapping
    valueSettings: BillingMeterValueSettings
    statusTransitions: BillingMeterStatusTransitions


class BillingMeterEvent(TypedDict):
    """What ``meter_events.create`` answers: the event as accepted (no ``id``: its
    ``identifier`` names it)."""

    object: Literal["billing.meter_event"]
    eventName: str
    identifier: str
    payload: dict[str, Any]
    timestamp: int
    created: int
    livemode: bool


class BillingMeterListedEvent(BillingMeterEvent):
    """``meters.list_events``: an event with what became of it."""

    status: Literal["counted", "cancelled", "rejected"]


class BillingMeterEventBatch(TypedDict):
    object: Literal["billing.meter_event_batch"]
    created: int
    livemode: bool
    count: int
    duplicates: int
    """Events whose identifier was already accepted with the same content (not resent)."""
    data: list[BillingMeterEvent]


class BillingMeterEventSummary(TypedDict):
    id: str
    object: Literal["billing.meter_event_summary"]
    meter: str
    customer: str
    livemode: bool
    startTime: int
    endTime: int
    aggregatedValue: int | float
    """A JSON number, for display; ``aggregatedValueDecimal`` is exact."""
    aggregatedValueDecimal: str


class BillingMeterEventAdjustmentCancel(TypedDict):
    identifier: str


class BillingMeterEventAdjustment(_Object):
    eventName: str
    type: Literal["cancel"]
    cancel: BillingMeterEventAdjustmentCancel
    status: Literal["complete", "pending"]


class BillingAlertUsageThreshold(TypedDict):
    meter: str
    gte: int
    recurrence: Literal["one_time"]


class BillingAlertFilter(TypedDict):
    customer: str


class BillingAlert(_Object):
    title: str
    alertType: Literal["usage_threshold"]
    status: Literal["active", "inactive", "archived"]
    usageThreshold: BillingAlertUsageThreshold
    filter: BillingAlertFilter | None


class BillingAlertTriggered(TypedDict):
    """The ``data`` of a ``billing.alert.triggered`` event."""

    object: Literal["billing.alert_triggered"]
    alert: BillingAlert
    customer: str
    value: int | float
    valueDecimal: str
    created: int
    livemode: bool
