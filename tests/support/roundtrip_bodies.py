"""Request bodies that between them set every field of every create and update model (and
every value of each ``Literal`` field), and what each body must read back as.

``"$name"`` strings stand for ids made while a test runs (:func:`fill`). The read-back rules
here are the documented ones (``docs/api.md``); anything a body gives that no rule mentions
must come back unchanged.
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from control.catalog import PriceCreate, ProductCreate
from control.customers import CustomerCreate, CustomerUpdate
from control.subscriptions import ClockAdvance, ClockCreate, SubscriptionCreate, SubscriptionUpdate
from control.webhooks import EndpointCreate, EndpointUpdate

Body = dict[str, Any]

PRODUCTS: list[Body] = [
    {"name": "API access", "description": "Metered API calls", "metadata": {"team": "core"}},
    {"name": "Seats"},
]

_MONTHLY_METERED = {"interval": "month", "usageType": "metered"}

PRICES: list[Body] = [
    # the guide's whole-cent rate, licensed, with everything a price can carry
    {
        "product": "$product",
        "currency": "EUR",
        "billingScheme": "per_unit",
        "unitAmount": 5,
        "recurring": {"interval": "month", "intervalCount": 1, "usageType": "licensed"},
        "nickname": "Standard",
        "metadata": {"tier": "standard", "region": "eu"},
    },
    # the guide's metered price: 'usage', a sub-cent decimal, summed
    {
        "product": "$product",
        "currency": "EUR",
        "billingScheme": "usage",
        "unitAmountDecimal": "0.2",
        "recurring": {"interval": "month", "usageType": "metered", "aggregateUsage": "sum"},
    },
    # a whole amount written as a decimal string, and as a JSON number
    {
        "product": "$product",
        "currency": "eur",
        "unitAmountDecimal": "5",
        "recurring": {"interval": "week", "intervalCount": 2, "usageType": "metered"},
    },
    {
        "product": "$product",
        "currency": "usd",
        "unitAmountDecimal": 7,
        "recurring": {"interval": "day", "usageType": "metered", "aggregateUsage": "max"},
    },
    # package pricing
    {
        "product": "$product",
        "currency": "EUR",
        "unitAmount": 100,
        "transformQuantity": {"divideBy": 10, "round": "up"},
        "recurring": {"interval": "year"},
    },
    {
        "product": "$product",
        "currency": "jpy",
        "unitAmountDecimal": "2.5",
        "transformQuantity": {"divideBy": 1000, "round": "down"},
        "recurring": {**_MONTHLY_METERED, "aggregateUsage": "last_during_period"},
    },
    # graduated tiers with flat amounts, whole and decimal, and a tier with no amounts
    {
        "product": "$product",
        "currency": "EUR",
        "billingScheme": "tiered",
        "tiersMode": "graduated",
        "tiers": [
            {"upTo": 100, "unitAmount": 10, "flatAmount": 500},
            {"upTo": 1000, "unitAmountDecimal": "0.5", "flatAmountDecimal": "0.25"},
            {"upTo": 5000},
            {"upTo": "inf", "unitAmountDecimal": "0.000000000001"},
        ],
        "recurring": {**_MONTHLY_METERED, "aggregateUsage": "last_ever"},
    },
    # volume tiers
    {
        "product": "$product",
        "currency": "kwd",
        "billingScheme": "tiered",
        "tiersMode": "volume",
        "tiers": [
            {"upTo": 10, "unitAmount": 700, "flatAmountDecimal": "12.5"},
            {"upTo": "inf", "unitAmountDecimal": "600.125", "flatAmount": 0},
        ],
        "recurring": {"interval": "month", "usageType": "licensed"},
    },
    # a meter's usage, by a graduated tier with a decimal amount
    {
        "product": "$product",
        "currency": "EUR",
        "billingScheme": "tiered",
        "tiersMode": "graduated",
        "tiers": [{"upTo": 1000, "unitAmount": 0}, {"upTo": "inf", "unitAmountDecimal": "0.25"}],
        "recurring": {**_MONTHLY_METERED, "meter": "$meter"},
    },
]

CUSTOMERS: list[Body] = [
    {
        "id": "cust_roundtrip_1",
        "name": "Ada",
        "email": "ada@example.com",
        "paymentMethod": "pm_card_visa",
        "metadata": {"crm": "42"},
    },
    {"name": "Grace", "paymentMethod": "5555555555554444"},
    {},
]

# Applied in order to the first customer above.
CUSTOMER_UPDATES: list[Body] = [
    {"name": "Ada L.", "email": "ada@example.org", "metadata": {"crm": "43", "vip": "yes"}},
    {"paymentMethod": "378282246310005"},
    {"paymentMethod": "pm_card_mastercard", "name": None},
    {"email": None, "metadata": None, "paymentMethod": None},
]

# The brand and last4 each test payment method stands for.
CARDS: dict[str, tuple[str, str]] = {
    "pm_card_visa": ("visa", "4242"),
    "pm_card_mastercard": ("mastercard", "4444"),
    "5555555555554444": ("mastercard", "4444"),
    "378282246310005": ("amex", "0005"),
}

SUBSCRIPTIONS: list[Body] = [
    {
        "customer": "$customer",
        "items": [
            {"price": "$licensed", "quantity": 3, "id": "si_roundtrip_1"},
            {"price": "$metered", "id": "si_roundtrip_2"},
        ],
        "testClock": "$clock",
        "cancelAtPeriodEnd": True,
        "metadata": {"plan": "pro"},
    },
    {"customer": "$customer", "items": [{"price": "$licensed"}], "cancelAtPeriodEnd": False},
]

# Applied in order to the first subscription above.
SUBSCRIPTION_UPDATES: list[Body] = [
    {
        "cancelAtPeriodEnd": False,
        "metadata": {"plan": "team"},
        "items": [
            {"id": "si_roundtrip_1", "price": "$licensed2", "quantity": 5},
            {"id": "si_roundtrip_2", "price": "$metered2"},
        ],
        "prorationBehavior": "none",
    },
    {
        "items": [{"id": "si_roundtrip_1", "quantity": 0}, {"price": "$metered"}],
        "prorationBehavior": "create_prorations",
    },
    {"cancelAtPeriodEnd": True, "metadata": {}},
]
# Instructions about how to apply an update, not properties of the object.
WRITE_ONLY = {"prorationBehavior"}

ENDPOINTS: list[Body] = [
    {
        "url": "https://Example.com",
        "enabledEvents": ["invoice.paid", "customer.created"],
        "description": "billing hooks",
    },
    {"url": "http://127.0.0.1:9/hook?x=1", "enabledEvents": ["*"]},
]

# Applied in order to the first endpoint above.
ENDPOINT_UPDATES: list[Body] = [
    {
        "url": "https://example.com/b",
        "enabledEvents": ["*"],
        "description": None,
        "status": "disabled",
    },
    {"status": "enabled", "description": "back again", "enabledEvents": ["invoice.created"]},
]

CLOCKS: list[Body] = [{"frozenTime": 1_767_225_600, "name": "January"}, {"frozenTime": 0}]
CLOCK_ADVANCES: list[Body] = [{"frozenTime": 1_767_225_600 + 86_400}]

BODIES: dict[type[BaseModel], list[Body]] = {
    ProductCreate: PRODUCTS,
    PriceCreate: PRICES,
    CustomerCreate: CUSTOMERS,
    CustomerUpdate: CUSTOMER_UPDATES,
    SubscriptionCreate: SUBSCRIPTIONS,
    SubscriptionUpdate: SUBSCRIPTION_UPDATES,
    EndpointCreate: ENDPOINTS,
    EndpointUpdate: ENDPOINT_UPDATES,
    ClockCreate: CLOCKS,
    ClockAdvance: CLOCK_ADVANCES,
}


def fill(body: Any, ids: dict[str, str]) -> Any:
    """``body`` with each ``"$name"`` replaced by ``ids[name]``."""
    if isinstance(body, dict):
        return {k: fill(v, ids) for k, v in body.items()}
    if isinstance(body, list):
        return [fill(v, ids) for v in body]
    if isinstance(body, str) and body.startswith("$"):
        return ids[body[1:]]
    return body


def _amounts(part: Body, key: str, *, absent_is_zero: bool) -> None:
    """Each amount reads back in both forms: the decimal string always, the integer when
    whole; a tier's omitted amount is 0."""
    dec = key + "Decimal"
    if part.get(key) is not None:
        part[dec] = str(part[key])
    elif part.get(dec) is not None:
        value = Decimal(str(part[dec]))
        part[dec] = str(part[dec])
        part[key] = int(value) if value == value.to_integral_value() else None
    elif absent_is_zero:
        part[key], part[dec] = 0, "0"


def expect_price(body: Body) -> Body:
    """Currency reads back lowercased and ``billingScheme: "usage"`` as ``"per_unit"`` with
    ``usageType: "metered"``; ``intervalCount`` defaults to 1, ``usageType`` to licensed,
    a metered price's ``aggregateUsage`` to ``sum`` (``None`` with a ``meter``, which
    defaults to ``None``)."""
    out = copy.deepcopy(body)
    out["currency"] = body["currency"].lower()
    recurring = out["recurring"]
    if body.get("billingScheme") == "usage":
        out["billingScheme"] = "per_unit"
        recurring.setdefault("usageType", "metered")
    out.setdefault("billingScheme", "per_unit")
    recurring.setdefault("intervalCount", 1)
    recurring.setdefault("usageType", "licensed")
    metered = recurring["usageType"] == "metered"
    recurring.setdefault("meter", None)
    billed_by_records = metered and recurring["meter"] is None
    recurring.setdefault("aggregateUsage", "sum" if billed_by_records else None)
    if out["billingScheme"] == "tiered":
        out |= {"unitAmount": None, "unitAmountDecimal": None, "transformQuantity": None}
        for tier in out["tiers"]:
            _amounts(tier, "unitAmount", absent_is_zero=True)
            _amounts(tier, "flatAmount", absent_is_zero=True)
    else:
        out |= {"tiers": None, "tiersMode": None}
        out.setdefault("transformQuantity", None)
        _amounts(out, "unitAmount", absent_is_zero=False)
    out.setdefault("nickname", None)
    out.setdefault("metadata", {})
    return out


def expect_customer(body: Body, before: Body | None = None) -> Body:
    """``paymentMethod`` is a token, not a field: it reads back as a new ``pm_`` id in
    ``defaultPaymentMethod`` (checked against :data:`CARDS` by the test); on update an
    explicit ``null`` clears a field (``metadata`` to ``{}``, no default payment method)."""
    out = {k: v for k, v in body.items() if k != "paymentMethod"}
    if before is None:
        out = {"name": None, "email": None, "metadata": {}} | out
    elif "metadata" in body and body["metadata"] is None:
        out["metadata"] = {}
    if "paymentMethod" in body and body["paymentMethod"] is None:
        out["defaultPaymentMethod"] = None
        out["invoiceSettings"] = {"defaultPaymentMethod": None}
    return out


def expect_subscription(body: Body, metered: set[str], before: Body | None = None) -> Body:
    """Items read back in order as ``items.data`` (price as the whole price object, a
    licensed item's ``quantity`` defaulting to 1, a metered one's ``null``); an update's item
    with ``id`` changes that item, one without is added at the end."""
    out = {k: v for k, v in body.items() if k not in WRITE_ONLY | {"items"}}
    if before is None:
        out = {"testClock": None, "cancelAtPeriodEnd": False, "metadata": {}} | out
        items = []
    else:
        items = [
            {"id": i["id"], "price": {"id": i["price"]["id"]}, "quantity": i["quantity"]}
            for i in before["items"]["data"]
        ]
    for change in body.get("items", []):
        target = next((i for i in items if "id" in change and i.get("id") == change["id"]), None)
        if target is None:
            is_metered = change["price"] in metered
            item: Body = {"price": {"id": change["price"]}}
            item["quantity"] = change.get("quantity", None if is_metered else 1)
            if "id" in change:
                item["id"] = change["id"]
            items.append(item)
            continue
        if "price" in change:
            target["price"] = {"id": change["price"]}
        if "quantity" in change:
            target["quantity"] = change["quantity"]
    if before is not None or body.get("items"):
        out["items"] = {"object": "list", "data": items}
    return out
