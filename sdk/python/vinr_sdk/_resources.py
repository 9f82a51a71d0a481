"""API resources, written once for both clients.

Each method sends its keyword arguments as the JSON body (POST) or the query string
(GET/DELETE). Arguments are snake_case and go out in the API's camelCase, nested keys
included (``_casing.camelize``); the bodies are typed by the ``TypedDict``s of
``types.py``, so a type checker catches a misspelt field:
``client.prices.create(product=p, currency="EUR", billing_scheme="usage", ...)``.
``idempotency_key`` is the one keyword that is not sent as a field: it becomes the
``Idempotency-Key`` header.

The resource classes are generic in what a call returns — a ``VinrObject`` for ``Vinr``, a
coroutine of one for ``AsyncVinr`` — so one definition serves both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Protocol, TypeVar, Unpack
from urllib.parse import quote

from ._casing import camelize
from .types import (
    BillingAlertCreateParams,
    BillingMeterCreateParams,
    BillingMeterEventAdjustmentCreateParams,
    BillingMeterEventBatchParams,
    BillingMeterEventCreateParams,
    BillingMeterEventListParams,
    BillingMeterEventSummaryListParams,
    BillingMeterUpdateParams,
    CustomerCreateParams,
    CustomerUpdateParams,
    EventResendParams,
    InvoiceUpcomingParams,
    PriceCreateParams,
    ProductCreateParams,
    SubscriptionCreateParams,
    SubscriptionUpdateParams,
    TestClockAdvanceParams,
    TestClockCreateParams,
    UsageRecordBatchParams,
    UsageRecordCreateParams,
    WebhookEndpointCreateParams,
    WebhookEndpointUpdateParams,
)

__all__ = [
    "Billing",
    "BillingAlerts",
    "BillingMeterEventAdjustments",
    "BillingMeterEvents",
    "BillingMeters",
    "Charges",
    "Customers",
    "Events",
    "Invoices",
    "Prices",
    "Products",
    "Requester",
    "ResourceNamespaces",
    "Subscriptions",
    "TestClocks",
    "TestHelperSubscriptions",
    "TestHelpers",
    "UsageRecords",
    "WebhookEndpoints",
]

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Requester(Protocol[R_co]):
    """What a resource needs from a client: one logical call, retries included."""

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> R_co: ...


def _path(base: str, object_id: str, suffix: str = "") -> str:
    if not isinstance(object_id, str) or not object_id:
        raise ValueError(f"an object id must be a non-empty string, got {object_id!r}")
    return f"{base}/{quote(object_id, safe='')}{suffix}"


class _Resource(Generic[R]):
    _base: str = ""

    def __init__(self, requester: Requester[R]) -> None:
        self._requester = requester

    def _get(self, path: str, query: Mapping[str, Any] | None = None) -> R:
        return self._requester.request("GET", path, query=camelize(query or {}))

    def _post(self, path: str, body: Mapping[str, Any], idempotency_key: str | None) -> R:
        return self._requester.request(
            "POST", path, body=camelize(body), idempotency_key=idempotency_key
        )

    def _delete(self, path: str, query: Mapping[str, Any] | None = None) -> R:
        return self._requester.request("DELETE", path, query=camelize(query) if query else None)

    def _create(self, params: Mapping[str, Any], idempotency_key: str | None) -> R:
        return self._post(self._base, params, idempotency_key)

    def _update(self, id: str, params: Mapping[str, Any], idempotency_key: str | None) -> R:
        return self._post(_path(self._base, id), params, idempotency_key)


class _Retrieve(_Resource[R]):
    def retrieve(self, id: str, /) -> R:
        """``GET {base}/{id}``."""
        return self._get(_path(self._base, id))


class _List(_Resource[R]):
    def list(self, **params: Any) -> R:
        """``GET {base}?…`` — e.g. ``limit=10, starting_after="…"``; newest first."""
        return self._get(self._base, params)


class Products(_Retrieve[R], _List[R]):
    _base = "/v1/products"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[ProductCreateParams]
    ) -> R:
        """``POST /v1/products`` — ``name, description?, metadata?``."""
        return self._create(params, idempotency_key)


class Prices(_Retrieve[R], _List[R]):
    _base = "/v1/prices"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[PriceCreateParams]
    ) -> R:
        """``POST /v1/prices`` — ``product, currency, recurring, billing_scheme?,
        unit_amount | unit_amount_decimal, tiers?, tiers_mode?, transform_quantity?``."""
        return self._create(params, idempotency_key)


class Customers(_Retrieve[R], _List[R]):
    _base = "/v1/customers"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[CustomerCreateParams]
    ) -> R:
        """``POST /v1/customers`` — ``id?, name?, email?, payment_method?, metadata?``."""
        return self._create(params, idempotency_key)

    def update(
        self,
        id: str,
        /,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[CustomerUpdateParams],
    ) -> R:
        """``POST /v1/customers/{id}``."""
        return self._update(id, params, idempotency_key)


class Subscriptions(_Retrieve[R], _List[R]):
    _base = "/v1/subscriptions"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[SubscriptionCreateParams]
    ) -> R:
        """``POST /v1/subscriptions`` — ``customer, items: [{price, quantity?, id?}],
        test_clock?, cancel_at_period_end?, metadata?``."""
        return self._create(params, idempotency_key)

    def update(
        self,
        id: str,
        /,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[SubscriptionUpdateParams],
    ) -> R:
        """``POST /v1/subscriptions/{id}`` — ``cancel_at_period_end?, metadata?``."""
        return self._update(id, params, idempotency_key)

    def cancel(self, id: str, /, **params: Any) -> R:
        """``DELETE /v1/subscriptions/{id}``: cancel now and invoice the final usage."""
        return self._delete(_path(self._base, id), params or None)


class UsageRecords(_Resource[R]):
    _base = "/v1/usage_records"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[UsageRecordCreateParams]
    ) -> R:
        """``POST /v1/usage_records`` — ``subscription_item, quantity, timestamp?, action?``.

        Pass an ``idempotency_key`` derived from your own event id so that a retry after a
        crash does not count the usage twice.
        """
        return self._post(self._base, params, idempotency_key)

    def create_batch(
        self, *, idempotency_key: str | None = None, **params: Unpack[UsageRecordBatchParams]
    ) -> R:
        """``POST /v1/usage_records/batch`` — ``subscription_item, records: [...]`` (≤ 1000)."""
        return self._post(f"{self._base}/batch", params, idempotency_key)

    def summaries(self, **params: Any) -> R:
        """``GET /v1/usage_records/summaries`` — ``subscription_item="si_…"``; newest period
        first."""
        return self._get(f"{self._base}/summaries", params)


class Invoices(_Retrieve[R], _List[R]):
    _base = "/v1/invoices"

    def pay(self, id: str, /, *, idempotency_key: str | None = None, **params: Any) -> R:
        """``POST /v1/invoices/{id}/pay``."""
        return self._post(_path(self._base, id, "/pay"), params, idempotency_key)

    def upcoming(self, **params: Unpack[InvoiceUpcomingParams]) -> R:
        """``GET /v1/invoices/upcoming`` — ``subscription="sub_…"``: the invoice the current
        period would close with now (``id`` null, ``status`` ``"draft"``; nothing is stored)."""
        return self._get(f"{self._base}/upcoming", params)


class Charges(_List[R]):
    _base = "/v1/charges"


class WebhookEndpoints(_Retrieve[R], _List[R]):
    _base = "/v1/webhook_endpoints"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[WebhookEndpointCreateParams]
    ) -> R:
        """``POST /v1/webhook_endpoints`` — ``url, enabled_events``; the answer holds the
        ``secret``, shown only here and by ``roll_secret``."""
        return self._create(params, idempotency_key)

    def update(
        self,
        id: str,
        /,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[WebhookEndpointUpdateParams],
    ) -> R:
        """``POST /v1/webhook_endpoints/{id}`` — ``url?, enabled_events?, description?,
        status?: "enabled" | "disabled"``."""
        return self._update(id, params, idempotency_key)

    def delete(self, id: str, /) -> R:
        """``DELETE /v1/webhook_endpoints/{id}``."""
        return self._delete(_path(self._base, id))

    def roll_secret(self, id: str, /, *, idempotency_key: str | None = None) -> R:
        """A new ``secret``, returned this once; the old one keeps signing for 24 h."""
        return self._post(_path(self._base, id, "/roll_secret"), {}, idempotency_key)


class Events(_Retrieve[R], _List[R]):
    _base = "/v1/events"

    def deliveries(self, id: str, /, **params: Any) -> R:
        """``GET /v1/events/{id}/deliveries``: one per endpoint, each with its attempts."""
        return self._get(_path(self._base, id, "/deliveries"), params)

    def resend(
        self, id: str, /, *, idempotency_key: str | None = None, **params: Unpack[EventResendParams]
    ) -> R:
        """``POST /v1/events/{id}/resend`` — to ``webhook_endpoint=…``, or to every enabled
        endpoint subscribed to the event's type."""
        return self._post(_path(self._base, id, "/resend"), params, idempotency_key)


class BillingMeters(_Retrieve[R], _List[R]):
    """``billing.meters``: what is counted from meter events, and how (``sum``, ``count``,
    ``last``, ``max``). ``list(status="active" | "inactive", limit=…, starting_after=…)``."""

    _base = "/v1/billing/meters"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[BillingMeterCreateParams]
    ) -> R:
        """``POST /v1/billing/meters`` — ``display_name, event_name,
        default_aggregation={"formula": …}, customer_mapping?, value_settings?``."""
        return self._create(params, idempotency_key)

    def update(
        self,
        id: str,
        /,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[BillingMeterUpdateParams],
    ) -> R:
        """``POST /v1/billing/meters/{id}`` — ``display_name``."""
        return self._update(id, params, idempotency_key)

    def deactivate(self, id: str, /, *, idempotency_key: str | None = None) -> R:
        """``POST /v1/billing/meters/{id}/deactivate``: events for its name are refused."""
        return self._post(_path(self._base, id, "/deactivate"), {}, idempotency_key)

    def reactivate(self, id: str, /, *, idempotency_key: str | None = None) -> R:
        """``POST /v1/billing/meters/{id}/reactivate`` (refused while another active meter
        has its event name)."""
        return self._post(_path(self._base, id, "/reactivate"), {}, idempotency_key)

    def list_event_summaries(
        self, id: str, /, **params: Unpack[BillingMeterEventSummaryListParams]
    ) -> R:
        """``GET /v1/billing/meters/{id}/event_summaries`` — ``customer, start_time,
        end_time`` (minute boundaries), ``value_grouping_window?: "hour" | "day"``."""
        return self._get(_path(self._base, id, "/event_summaries"), params)

    def list_events(self, id: str, /, **params: Unpack[BillingMeterEventListParams]) -> R:
        """``GET /v1/billing/meters/{id}/events`` — ``customer, limit?, starting_after?``;
        newest timestamp first, cancelled and rejected events included (``status``)."""
        return self._get(_path(self._base, id, "/events"), params)


class BillingMeterEvents(_Resource[R]):
    """``billing.meter_events``: usage sent by event name; the active meter with that name
    counts it. ``payload`` keys are sent as given (they are the meter's payload keys).

    A meter event is deduplicated by its ``identifier``: pass one derived from your own
    event id, so that a resend after a crash is never counted twice. Without one the API
    makes one (``mevt_…``); the SDK does not, as it makes none for usage records either —
    its own retries of a call are covered by that call's ``Idempotency-Key``.
    """

    _base = "/v1/billing/meter_events"

    def create(
        self,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[BillingMeterEventCreateParams],
    ) -> R:
        """``POST /v1/billing/meter_events`` — ``event_name, payload, identifier?,
        timestamp?``."""
        return self._post(self._base, params, idempotency_key)

    def create_batch(
        self,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[BillingMeterEventBatchParams],
    ) -> R:
        """``POST /v1/billing/meter_events/batch`` — ``events=[…]`` (≤ 1000), accepted or
        refused as a whole."""
        return self._post(f"{self._base}/batch", params, idempotency_key)


class BillingMeterEventAdjustments(_Resource[R]):
    _base = "/v1/billing/meter_event_adjustments"

    def create(
        self,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[BillingMeterEventAdjustmentCreateParams],
    ) -> R:
        """``POST /v1/billing/meter_event_adjustments`` — ``event_name, type="cancel",
        cancel={"identifier": …}``; ``status`` is ``"pending"`` when the event has not
        arrived yet (it will never count)."""
        return self._post(self._base, params, idempotency_key)


class BillingAlerts(_Retrieve[R], _List[R]):
    """``billing.alerts``: a ``billing.alert.triggered`` event, once per customer, when a
    customer's usage of a meter in the current period reaches ``gte``."""

    _base = "/v1/billing/alerts"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[BillingAlertCreateParams]
    ) -> R:
        """``POST /v1/billing/alerts`` — ``title, alert_type="usage_threshold",
        usage_threshold={"meter", "gte", "recurrence": "one_time"}, filter?={"customer"}``."""
        return self._create(params, idempotency_key)

    def activate(self, id: str, /, *, idempotency_key: str | None = None) -> R:
        """``POST /v1/billing/alerts/{id}/activate``."""
        return self._post(_path(self._base, id, "/activate"), {}, idempotency_key)

    def deactivate(self, id: str, /, *, idempotency_key: str | None = None) -> R:
        """``POST /v1/billing/alerts/{id}/deactivate``."""
        return self._post(_path(self._base, id, "/deactivate"), {}, idempotency_key)

    def archive(self, id: str, /, *, idempotency_key: str | None = None) -> R:
        """``POST /v1/billing/alerts/{id}/archive``: for good."""
        return self._post(_path(self._base, id, "/archive"), {}, idempotency_key)


class Billing(Generic[R]):
    """``meters``, ``meter_events``, ``meter_event_adjustments`` and ``alerts``."""

    def __init__(self, requester: Requester[R]) -> None:
        self.meters = BillingMeters(requester)
        self.meter_events = BillingMeterEvents(requester)
        self.meter_event_adjustments = BillingMeterEventAdjustments(requester)
        self.alerts = BillingAlerts(requester)


class TestHelperSubscriptions(_Resource[R]):
    __test__ = False  # not a pytest class
    _base = "/v1/test_helpers/subscriptions"

    def advance_period(self, id: str, /, *, idempotency_key: str | None = None, **params: Any) -> R:
        """End the current period now, invoice it and start the next (sandbox only)."""
        return self._post(_path(self._base, id, "/advance_period"), params, idempotency_key)


class TestClocks(_Retrieve[R]):
    __test__ = False
    _base = "/v1/test_helpers/test_clocks"

    def create(
        self, *, idempotency_key: str | None = None, **params: Unpack[TestClockCreateParams]
    ) -> R:
        """``POST /v1/test_helpers/test_clocks`` — ``frozen_time, name?``."""
        return self._create(params, idempotency_key)

    def advance(
        self,
        id: str,
        /,
        *,
        idempotency_key: str | None = None,
        **params: Unpack[TestClockAdvanceParams],
    ) -> R:
        """``POST /v1/test_helpers/test_clocks/{id}/advance`` — ``frozen_time=…``."""
        return self._post(_path(self._base, id, "/advance"), params, idempotency_key)


class TestHelpers(Generic[R]):
    """Sandbox-only helpers: ``subscriptions.advance_period`` and ``test_clocks``."""

    __test__ = False

    def __init__(self, requester: Requester[R]) -> None:
        self.subscriptions = TestHelperSubscriptions(requester)
        self.test_clocks = TestClocks(requester)


class ResourceNamespaces(Generic[R]):
    """The resource attributes of a client, typed by what its calls return."""

    products: Products[R]
    prices: Prices[R]
    customers: Customers[R]
    subscriptions: Subscriptions[R]
    usage_records: UsageRecords[R]
    invoices: Invoices[R]
    charges: Charges[R]
    webhook_endpoints: WebhookEndpoints[R]
    events: Events[R]
    billing: Billing[R]
    test_helpers: TestHelpers[R]

    def _attach_resources(self, requester: Requester[R]) -> None:
        self.products = Products(requester)
        self.prices = Prices(requester)
        self.customers = Customers(requester)
        self.subscriptions = Subscriptions(requester)
        self.usage_records = UsageRecords(requester)
        self.invoices = Invoices(requester)
        self.charges = Charges(requester)
        self.webhook_endpoints = WebhookEndpoints(requester)
        self.events = Events(requester)
        self.billing = Billing(requester)
        self.test_helpers = TestHelpers(requester)
