"""Accounts and modes are isolated on every operation the API serves.

Two accounts, A and B, each with objects in its modes: products, prices, customers and
their payment methods, subscriptions and items, usage, invoices and charges (a period
advanced and paid), webhook endpoints, events, test clocks, dead letters, billing meters
with their events, and usage alerts. Then every operation of the served ``/openapi.json``
is called with another tenant's ids — B's sandbox key on A's sandbox objects, A's live key
on A's sandbox objects, and A's sandbox key on A's live objects:

- an id in the path → 404;
- an id in the body or a query (a price in a subscription, a customer, a subscription
  item for usage, an endpoint to resend to) → 400 or 404 naming that parameter;
- a list never returns a foreign object, also when its filters name foreign ids;
- an operation that only creates (a product, a customer under a caller-chosen id that the
  other tenant also uses) creates it in the caller's own account and mode.

Refused calls write nothing: every table's content (bar key bookkeeping) is the same before
and after each, and no usage reaches the topic. No answer carries an id or secret of the
victim that the request did not carry itself, and everything the victim reads of its own
objects is unchanged afterwards.

``OPERATIONS`` holds the probes of each operation; the test fails for an operation the API
serves without an entry there (and for an entry the API no longer serves).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from domain.accounts import create_account
from domain.deadletters import insert_dead_letters
from domain.store import webhooks as endpoint_store
from domain.tenant import Tenant
from infra.ids import new_id, new_secret
from invoicer.worker import Invoicer
from tests.support.api import PATH_KINDS, metered_price, post
from tests.support.billing import DAY, T0
from tests.support.meterdata import Ev, write_events

Op = tuple[str, str]  # (METHOD, path template as /openapi.json writes it)
Body = dict[str, Any]

# Tables no request writes to: nothing to compare.
UNFINGERPRINTED = ("schema_migrations",)
LOCAL_HOOK = "http://127.0.0.1:9/hook"  # the discard port: nothing listens there


class Absent(LookupError):
    """The victim has no object of this kind (live mode has no test clocks, cards,
    invoices): a probe that needs one does not apply to it."""


@dataclass
class Party:
    """One account in one mode: its client and the objects it owns."""

    name: str
    account: str
    live: bool
    client: httpx.AsyncClient
    objects: dict[str, str] = field(default_factory=dict)
    secrets: list[str] = field(default_factory=list)  # its keys and webhook secrets

    def __getitem__(self, kind: str) -> str:
        if kind not in self.objects:
            raise Absent(kind)
        return self.objects[kind]


@dataclass(frozen=True)
class Probe:
    op: Op
    path: str
    expect: str  # "missing" | "refused" | "listed" | "own"
    param: str | None = None  # the parameter a refusal must name (a list filter's name)
    query: dict[str, str] | None = None
    body: Body | None = None
    readback: str | None = None  # own: where the victim would read the created object

    def describe(self) -> str:
        query = f"?{self.query}" if self.query else ""
        body = f" {self.body}" if self.body is not None else ""
        return f"{self.op[0]} {self.path}{query}{body}"


Factory = Callable[[Party, Party, Op], Probe]


def fill(template: str, party: Party) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in PATH_KINDS, f"no object kind for path parameter {{{name}}}: add it"
        return party[PATH_KINDS[name]]

    return re.sub(r"\{(\w+)\}", one, template)


Make = Callable[[Party, Party], Body]


def at_path(body: Make | None = None, query: Make | None = None) -> Factory:
    """The victim's object in the path (with the victim's ids in the query an operation
    requires): 404, nothing written."""
    return lambda me, victim, op: Probe(
        op,
        fill(op[1], victim),
        "missing",
        body=body(me, victim) if body else None,
        query={k: str(v) for k, v in query(me, victim).items()} if query else None,
    )


def naming(param: str, *, body: Make | None = None, query: Make | None = None) -> Factory:
    """A victim's id in the body or the query (any path id is the caller's own): 400 or
    404 naming ``param``, nothing written."""
    return lambda me, victim, op: Probe(
        op,
        fill(op[1], me),
        "refused",
        param=param,
        body=body(me, victim) if body else None,
        query={k: str(v) for k, v in query(me, victim).items()} if query else None,
    )


def listing(filter_name: str | None = None, value: Callable[[Party], str] | None = None) -> Factory:
    """The caller's list (under its own path ids), filtered by a victim's id or not: only
    the caller's objects; a filter naming a foreign id may instead be refused by name."""

    def make(me: Party, victim: Party, op: Op) -> Probe:
        query = {"limit": "100"}
        if filter_name is not None and value is not None:
            query[filter_name] = value(victim)
        return Probe(op, fill(op[1], me), "listed", param=filter_name, query=query)

    return make


def own(body: Make, readback: str | None = None) -> Factory:
    """Creates in the caller's account and mode only (or is refused there, writing
    nothing); ``readback`` is where the victim would find the new object."""
    return lambda me, victim, op: Probe(op, op[1], "own", body=body(me, victim), readback=readback)


def _price(product: str) -> Body:
    return {
        "product": product,
        "currency": "EUR",
        "unitAmountDecimal": "0.2",
        "recurring": {"interval": "month", "usageType": "metered", "aggregateUsage": "sum"},
    }


def _meter(event_name: str) -> Body:
    return {
        "displayName": "intruder",
        "eventName": event_name,
        "defaultAggregation": {"formula": "sum"},
    }


def _cancel(event_name: str, identifier: str) -> Body:
    return {"eventName": event_name, "type": "cancel", "cancel": {"identifier": identifier}}


def _alert(meter: str, customer: str | None = None) -> Body:
    body: Body = {
        "title": "intruder",
        "alertType": "usage_threshold",
        "usageThreshold": {"meter": meter, "gte": 5, "recurrence": "one_time"},
    }
    if customer is not None:
        body["filter"] = {"customer": customer}
    return body


def _window(customer: str) -> Body:
    return {"customer": customer, "startTime": T0, "endTime": T0 + 3600}


OPERATIONS: dict[Op, list[Factory]] = {
    ("POST", "/v1/products"): [own(lambda me, v: {"name": "intruder"}, "/v1/products/{}")],
    ("GET", "/v1/products"): [listing(), listing("startingAfter", lambda v: v["product"])],
    ("GET", "/v1/products/{product_id}"): [at_path()],
    ("POST", "/v1/prices"): [naming("product", body=lambda me, v: _price(v["product"]))],
    ("GET", "/v1/prices"): [listing(), listing("startingAfter", lambda v: v["price"])],
    ("GET", "/v1/prices/{price_id}"): [at_path()],
    ("POST", "/v1/customers"): [
        naming(
            "paymentMethod",
            body=lambda me, v: {"name": "intruder", "paymentMethod": v["payment_method"]},
        ),
        # The victim's caller-chosen id is free in another account or mode (no 409 tells
        # the caller it exists elsewhere).
        own(lambda me, v: {"id": v["customer"], "name": "intruder"}),
    ],
    ("GET", "/v1/customers"): [listing(), listing("startingAfter", lambda v: v["customer"])],
    ("GET", "/v1/customers/{customer_id}"): [at_path()],
    ("POST", "/v1/customers/{customer_id}"): [
        at_path(lambda me, v: {"name": "intruder"}),
        naming("paymentMethod", body=lambda me, v: {"paymentMethod": v["payment_method"]}),
    ],
    ("GET", "/v1/payment_methods/{pm_id}"): [at_path()],
    ("POST", "/v1/subscriptions"): [
        naming(
            "customer",
            body=lambda me, v: {"customer": v["customer"], "items": [{"price": me["price"]}]},
        ),
        naming(
            "items[0].price",
            body=lambda me, v: {"customer": me["customer"], "items": [{"price": v["price"]}]},
        ),
        naming(
            "testClock",
            body=lambda me, v: {
                "customer": me["customer"],
                "items": [{"price": me["price"]}],
                "testClock": v["clock"],
            },
        ),
        own(
            lambda me, v: {
                "customer": me["customer"],
                "items": [{"price": me["price"], "id": v["item"]}],
            },
            "/v1/subscriptions/{}",
        ),
    ],
    ("GET", "/v1/subscriptions"): [
        listing(),
        listing("customer", lambda v: v["customer"]),
        listing("startingAfter", lambda v: v["subscription"]),
    ],
    ("GET", "/v1/subscriptions/{sub_id}"): [at_path()],
    ("POST", "/v1/subscriptions/{sub_id}"): [
        at_path(lambda me, v: {"metadata": {"by": "intruder"}}),
        naming("items[0].id", body=lambda me, v: {"items": [{"id": v["item"]}]}),
        naming("items[0].price", body=lambda me, v: {"items": [{"price": v["price"]}]}),
        naming(
            "items[0].price",
            body=lambda me, v: {"items": [{"id": me["item"], "price": v["price"]}]},
        ),
    ],
    ("DELETE", "/v1/subscriptions/{sub_id}"): [at_path()],
    ("POST", "/v1/test_helpers/subscriptions/{sub_id}/advance_period"): [at_path()],
    ("POST", "/v1/test_helpers/test_clocks"): [
        own(lambda me, v: {"frozenTime": T0}, "/v1/test_helpers/test_clocks/{}")
    ],
    ("GET", "/v1/test_helpers/test_clocks/{clock_id}"): [at_path()],
    ("POST", "/v1/test_helpers/test_clocks/{clock_id}/advance"): [
        at_path(lambda me, v: {"frozenTime": T0 + 40 * DAY})
    ],
    ("GET", "/v1/usage_records/summaries"): [
        naming("subscriptionItem", query=lambda me, v: {"subscriptionItem": v["item"]})
    ],
    ("GET", "/v1/invoices/upcoming"): [
        naming("subscription", query=lambda me, v: {"subscription": v["subscription"]})
    ],
    ("GET", "/v1/invoices/{invoice_id}"): [at_path()],
    ("GET", "/v1/invoices"): [
        listing(),
        listing("subscription", lambda v: v["subscription"]),
        listing("customer", lambda v: v["customer"]),
        listing("startingAfter", lambda v: v["invoice"]),
    ],
    ("POST", "/v1/invoices/{invoice_id}/pay"): [at_path()],
    ("GET", "/v1/charges"): [
        listing(),
        listing("invoice", lambda v: v["invoice"]),
        listing("startingAfter", lambda v: v["charge"]),
    ],
    ("GET", "/v1/events/{event_id}"): [at_path()],
    ("GET", "/v1/events"): [
        listing(),
        listing("type", lambda v: "customer.created"),
        listing("startingAfter", lambda v: v["event"]),
    ],
    ("GET", "/v1/events/{event_id}/deliveries"): [
        at_path(),
        listing("webhookEndpoint", lambda v: v["endpoint"]),
    ],
    ("POST", "/v1/events/{event_id}/resend"): [
        at_path(lambda me, v: {}),
        naming("webhookEndpoint", body=lambda me, v: {"webhookEndpoint": v["endpoint"]}),
    ],
    ("POST", "/v1/webhook_endpoints"): [
        own(
            lambda me, v: {"url": LOCAL_HOOK, "enabledEvents": ["webhook_endpoint.disabled"]},
            "/v1/webhook_endpoints/{}",
        )
    ],
    ("GET", "/v1/webhook_endpoints"): [
        listing(),
        listing("startingAfter", lambda v: v["endpoint"]),
    ],
    ("GET", "/v1/webhook_endpoints/{endpoint_id}"): [at_path()],
    ("POST", "/v1/webhook_endpoints/{endpoint_id}"): [
        at_path(lambda me, v: {"description": "intruder"})
    ],
    ("DELETE", "/v1/webhook_endpoints/{endpoint_id}"): [at_path()],
    ("POST", "/v1/webhook_endpoints/{endpoint_id}/roll_secret"): [at_path()],
    ("GET", "/v1/usage_records/dead_letters"): [
        listing(),
        listing("subscriptionItem", lambda v: v["item"]),
        listing("startingAfter", lambda v: v["dead_letter"]),
    ],
    ("POST", "/v1/api_keys"): [
        own(lambda me, v: {"name": "intruder", "restricted": True}, "/v1/api_keys/{}")
    ],
    ("GET", "/v1/api_keys"): [listing(), listing("startingAfter", lambda v: v["api_key"])],
    ("GET", "/v1/api_keys/{key_id}"): [at_path()],
    ("POST", "/v1/api_keys/{key_id}/roll"): [at_path(lambda me, v: {"expiresIn": 3600})],
    ("DELETE", "/v1/api_keys/{key_id}"): [at_path()],
    ("POST", "/v1/billing/meters"): [
        # The victim's event name is free in another account or mode.
        own(lambda me, v: _meter(v["event_name"]), "/v1/billing/meters/{}")
    ],
    ("GET", "/v1/billing/meters"): [
        listing(),
        listing("status", lambda v: "active"),
        listing("startingAfter", lambda v: v["meter"]),
    ],
    ("GET", "/v1/billing/meters/{meter_id}"): [at_path()],
    ("POST", "/v1/billing/meters/{meter_id}"): [at_path(lambda me, v: {"displayName": "intruder"})],
    ("POST", "/v1/billing/meters/{meter_id}/deactivate"): [at_path()],
    ("POST", "/v1/billing/meters/{meter_id}/reactivate"): [at_path()],
    ("GET", "/v1/billing/meters/{meter_id}/event_summaries"): [
        at_path(query=lambda me, v: _window(v["customer"])),
        naming("customer", query=lambda me, v: _window(v["customer"])),
    ],
    ("GET", "/v1/billing/meters/{meter_id}/events"): [
        at_path(query=lambda me, v: {"customer": v["customer"]}),
        naming("customer", query=lambda me, v: {"customer": v["customer"]}),
        naming(
            "startingAfter",
            query=lambda me, v: {"customer": me["customer"], "startingAfter": v["meter_event"]},
        ),
    ],
    ("POST", "/v1/billing/meter_event_adjustments"): [
        naming("eventName", body=lambda me, v: _cancel(v["event_name"], v["meter_event"])),
        # The victim's identifier through the caller's own meter: a cancel of the caller's.
        own(lambda me, v: _cancel(me["event_name"], v["meter_event"])),
    ],
    ("POST", "/v1/billing/alerts"): [
        naming("usageThreshold.meter", body=lambda me, v: _alert(v["meter"])),
        naming("filter.customer", body=lambda me, v: _alert(me["meter"], v["customer"])),
        own(lambda me, v: _alert(me["meter"]), "/v1/billing/alerts/{}"),
    ],
    ("GET", "/v1/billing/alerts"): [
        listing(),
        listing("meter", lambda v: v["meter"]),
        listing("startingAfter", lambda v: v["alert"]),
    ],
    ("GET", "/v1/billing/alerts/{alert_id}"): [at_path()],
    ("POST", "/v1/billing/alerts/{alert_id}/activate"): [at_path()],
    ("POST", "/v1/billing/alerts/{alert_id}/deactivate"): [at_path()],
    ("POST", "/v1/billing/alerts/{alert_id}/archive"): [at_path()],
    ("POST", "/v1/usage_records"): [
        naming(
            "subscriptionItem", body=lambda me, v: {"subscriptionItem": v["item"], "quantity": 1}
        )
    ],
    ("POST", "/v1/usage_records/batch"): [
        naming(
            "subscriptionItem",
            body=lambda me, v: {"subscriptionItem": v["item"], "records": [{"quantity": 1}]},
        )
    ],
    ("POST", "/v1/billing/meter_events"): [
        naming("payload.customer", body=lambda me, v: _meter_event(me["event_name"], v)),
        naming("eventName", body=lambda me, v: _meter_event(v["event_name"], me)),
    ],
    ("POST", "/v1/billing/meter_events/batch"): [
        naming(
            "events[0].payload.customer",
            body=lambda me, v: {"events": [_meter_event(me["event_name"], v)]},
        ),
        naming(
            "events[0].eventName",
            body=lambda me, v: {"events": [_meter_event(v["event_name"], me)]},
        ),
    ],
}


def _meter_event(event_name: str, customer_of: Party) -> Body:
    return {"eventName": event_name, "payload": {"customer": customer_of["customer"], "value": 1}}


@dataclass
class _Late:
    """A dead letter's request (``domain.deadletters.Unfoldable``)."""

    id: str
    account_id: str
    livemode: bool
    item_pk: int
    period_start: int
    period_end: int
    accepted_at: int
    partition: int = 0
    offset: int = 0
    error: str | None = "records outside their period"

    def records(self) -> list[Any]:
        return [[self.period_start - 1, 1, False]]


async def _populate(
    party: Party, pool: asyncpg.Pool, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    """Objects of every kind the party's mode can hold."""
    c, objects = party.client, party.objects
    tenant = Tenant(party.account, party.live)
    if party.live:  # a live endpoint must be public: stored directly, and never delivered to
        row = await endpoint_store.insert_endpoint(
            pool,
            tenant,
            endpoint_id=new_id("we"),
            url="https://127.0.0.1:9/hook",
            enabled_events=["customer.created"],
            secret=new_secret("whsec"),
            description=None,
            created=T0,
        )
        endpoint = {"id": row["id"], "secret": row["secret"]}
    else:
        endpoint = await post(
            c, "/v1/webhook_endpoints", {"url": LOCAL_HOOK, "enabledEvents": ["customer.created"]}
        )
    objects["endpoint"] = endpoint["id"]
    party.secrets.append(endpoint["secret"])
    producer = await post(c, "/v1/api_keys", {"name": f"{party.name} producer", "restricted": True})
    objects["api_key"] = producer["id"]
    party.secrets.append(producer["secret"])
    price = await metered_price(c)
    objects["product"], objects["price"] = price["product"], price["id"]
    customer: Body = {"id": f"cust_iso{uuid.uuid4().hex[:12]}", "name": f"{party.name} customer"}
    if not party.live:
        customer["paymentMethod"] = "pm_card_visa"
    created = await post(c, "/v1/customers", customer)
    objects["customer"] = created["id"]
    if created["defaultPaymentMethod"]:
        objects["payment_method"] = created["defaultPaymentMethod"]
    # The endpoint got the customer's event; disabled, it holds no pending delivery for
    # the dispatchers of other tests.
    await post(c, f"/v1/webhook_endpoints/{endpoint['id']}", {"status": "disabled"})
    events = (await c.get("/v1/events", params={"type": "customer.created"})).json()["data"]
    objects["event"] = events[0]["id"]
    body: Body = {
        "customer": created["id"],
        "items": [{"price": price["id"], "id": f"si_iso{uuid.uuid4().hex[:12]}"}],
    }
    if not party.live:
        clock = await post(c, "/v1/test_helpers/test_clocks", {"frozenTime": T0})
        objects["clock"] = body["testClock"] = clock["id"]
    sub = await post(c, "/v1/subscriptions", body)
    objects["subscription"], objects["item"] = sub["id"], sub["items"]["data"][0]["id"]
    usage: Body = {"subscriptionItem": objects["item"], "quantity": 7}
    if not party.live:
        usage["timestamp"] = T0
    await post(c, "/v1/usage_records", usage)
    item_pk = await pool.fetchval(
        "SELECT pk FROM subscription_items WHERE account_id = $1 AND livemode = $2 AND id = $3",
        party.account,
        party.live,
        objects["item"],
    )
    async with pool.acquire() as conn, conn.transaction():
        late = _Late(new_id("mbu"), party.account, party.live, item_pk, T0, T0 + 31 * DAY, T0)
        await insert_dead_letters(conn, [late], "invalid_records")
    dead = (await c.get("/v1/usage_records/dead_letters")).json()["data"]
    objects["dead_letter"] = dead[0]["id"]
    event_name = f"iso_{uuid.uuid4().hex[:12]}"
    meter = await post(
        c,
        "/v1/billing/meters",
        {
            "displayName": f"{party.name} meter",
            "eventName": event_name,
            "defaultAggregation": {"formula": "sum"},
        },
    )
    objects["meter"], objects["event_name"] = meter["id"], event_name
    objects["meter_event"] = f"mev_iso{uuid.uuid4().hex[:12]}"
    await write_events(pool, meter["id"], created["id"], [Ev(objects["meter_event"], T0 + 61, 5)])
    alert = await post(c, "/v1/billing/alerts", _alert(meter["id"], created["id"]))
    objects["alert"] = alert["id"]
    if party.live:
        return
    await aggregator.drain()  # the invoicer prices a period once its usage is folded
    await post(c, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    for _ in range(600):
        await invoicer.tick()
        invoices = (await c.get("/v1/invoices", params={"subscription": sub["id"]})).json()
        if invoices["data"] and invoices["data"][0]["status"] == "paid":
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError(f"the invoice of {sub['id']} was not paid")
    while await invoicer.tick():  # nothing left due for the tests that follow
        pass
    objects["invoice"] = invoices["data"][0]["id"]
    charges = (await c.get("/v1/charges", params={"invoice": objects["invoice"]})).json()
    objects["charge"] = charges["data"][0]["id"]


@dataclass
class World:
    parties: dict[str, Party]
    pool: asyncpg.Pool
    aggregator: Aggregator
    served: set[Op]
    fingerprint_sql: str


@pytest.fixture(scope="module")
async def world(
    api: str, pool: asyncpg.Pool, aggregator: Aggregator, invoicer: Invoicer
) -> AsyncIterator[World]:
    parties: dict[str, Party] = {}
    clients: list[httpx.AsyncClient] = []
    try:
        for account_name in ("A", "B"):
            async with pool.acquire() as conn:
                account, test_key, live_key = await create_account(
                    conn, f"isolation {account_name}"
                )
            for live, key in ((False, test_key), (True, live_key)):
                client = httpx.AsyncClient(
                    base_url=api, timeout=30, headers={"Authorization": f"Bearer {key}"}
                )
                clients.append(client)
                name = f"{account_name} {'live' if live else 'sandbox'}"
                parties[name] = Party(name, account, live, client, secrets=[key])
        for name in ("A sandbox", "A live", "B sandbox"):
            await _populate(parties[name], pool, aggregator, invoicer)
        await aggregator.drain()
        async with httpx.AsyncClient(base_url=api) as anonymous:
            spec = (await anonymous.get("/openapi.json")).json()
        served = {
            (method.upper(), path)
            for path, operations in spec["paths"].items()
            for method in operations
            if method in ("get", "post", "put", "patch", "delete")
        }
        tables = [
            r["table_name"]
            for r in await pool.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                " AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
            if r["table_name"] not in UNFINGERPRINTED
        ]
        sql = " UNION ALL ".join(
            f"SELECT '{t}' AS t, count(*) AS n,"
            f" md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h FROM {t} x"
            for t in tables
        )
        yield World(parties, pool, aggregator, served, sql)
    finally:
        for client in clients:
            await client.aclose()


async def _fingerprint(world: World) -> dict[str, tuple[int, str]]:
    return {r["t"]: (r["n"], r["h"]) for r in await world.pool.fetch(world.fingerprint_sql)}


async def _victim_tokens(victim: Party) -> set[str]:
    """Every id and secret of the victim's that an answer to someone else must not carry."""
    tokens = set(victim.objects.values()) | set(victim.secrets)
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = (await victim.client.get("/v1/events", params=params)).json()
        tokens |= {e["id"] for e in page["data"]}
        if not page["hasMore"]:
            return tokens
        params["startingAfter"] = page["data"][-1]["id"]


async def _victim_view(victim: Party) -> dict[str, Any]:
    """Everything the victim reads of its own objects: each by id, and each list."""
    view: dict[str, Any] = {}
    c = victim.client
    for kind, path in (
        ("product", "/v1/products/{}"),
        ("price", "/v1/prices/{}"),
        ("customer", "/v1/customers/{}"),
        ("payment_method", "/v1/payment_methods/{}"),
        ("subscription", "/v1/subscriptions/{}"),
        ("clock", "/v1/test_helpers/test_clocks/{}"),
        ("invoice", "/v1/invoices/{}"),
        ("event", "/v1/events/{}"),
        ("endpoint", "/v1/webhook_endpoints/{}"),
        ("api_key", "/v1/api_keys/{}"),
        ("meter", "/v1/billing/meters/{}"),
        ("alert", "/v1/billing/alerts/{}"),
    ):
        if kind in victim.objects:
            view[path] = (await c.get(path.format(victim.objects[kind]))).json()
    for path in (
        "/v1/products",
        "/v1/prices",
        "/v1/customers",
        "/v1/subscriptions",
        "/v1/invoices",
        "/v1/charges",
        "/v1/events",
        "/v1/webhook_endpoints",
        "/v1/usage_records/dead_letters",
        "/v1/api_keys",
        "/v1/billing/meters",
        "/v1/billing/alerts",
    ):
        view[path] = (await c.get(path, params={"limit": 100})).json()
    view["summaries"] = (
        await c.get("/v1/usage_records/summaries", params={"subscriptionItem": victim["item"]})
    ).json()
    meter = f"/v1/billing/meters/{victim['meter']}"
    view["meter events"] = (
        await c.get(f"{meter}/events", params={"customer": victim["customer"]})
    ).json()
    view["meter summaries"] = (
        await c.get(f"{meter}/event_summaries", params=_window(victim["customer"]))
    ).json()
    event = victim["event"]
    view["deliveries"] = (await c.get(f"/v1/events/{event}/deliveries")).json()
    return view


def _probes(me: Party, victim: Party) -> list[Probe]:
    """Every operation's probes that apply to this victim; the ones that create run last
    (an id they take over in the caller's account would change what later probes find)."""
    probes = []
    for op, factories in OPERATIONS.items():
        for factory in factories:
            try:
                probes.append(factory(me, victim, op))
            except Absent:
                continue
    return sorted(probes, key=lambda p: p.expect == "own")


def _check(probe: Probe, answer: httpx.Response, me: Party) -> str | None:
    """What is wrong with the answer, or None."""
    status, text = answer.status_code, answer.text
    error = answer.json().get("error") if status >= 400 else None
    if probe.expect == "missing":
        if status != 404 or error is None:
            return f"expected 404, got {status}: {text}"
    elif probe.expect == "refused":
        if status not in (400, 404) or error is None or error.get("param") != probe.param:
            return f"expected 400/404 naming {probe.param}, got {status}: {text}"
    elif probe.expect == "listed":
        if status == 200:
            listed = answer.json()
            if listed.get("object") != "list":
                return f"expected a list, got {text}"
            foreign = [o for o in listed["data"] if o.get("livemode") not in (None, me.live)]
            if foreign:
                return f"objects of another mode listed: {foreign}"
        elif status not in (400, 404) or error is None or error.get("param") != probe.param:
            return f"expected 200, or 400/404 naming {probe.param}, got {status}: {text}"
    elif probe.expect == "own" and status == 200:
        created = answer.json()
        if created.get("livemode") is not me.live:
            return f"created in the wrong mode: {text}"
    elif probe.expect == "own" and (status not in (400, 404) or error is None):
        return f"expected 200 or a refusal, got {status}: {text}"
    return None


async def _run(world: World, attacker: str, target: str) -> None:
    me, victim = world.parties[attacker], world.parties[target]
    tokens = await _victim_tokens(victim)
    before = await _victim_view(victim)
    failures: list[str] = []
    for probe in _probes(me, victim):
        written = await _fingerprint(world)
        answer = await me.client.request(
            probe.op[0], probe.path, params=probe.query, json=probe.body
        )
        problem = _check(probe, answer, me)
        asked = probe.describe()
        leaked = sorted(t for t in tokens if t in answer.text and t not in asked)
        if leaked:
            problem = f"{problem or ''} answer carries the victim's {leaked}: {answer.text}"
        created = probe.expect == "own" and answer.status_code == 200
        if not created and await _fingerprint(world) != written:
            problem = f"{problem or ''} something was written"
        if created and probe.readback is not None:
            new = answer.json()["id"]
            seen = await victim.client.get(probe.readback.format(new))
            if new not in tokens and seen.status_code != 404:
                problem = f"{problem or ''} the victim sees the new {new}: {seen.text}"
        if problem is not None:
            failures.append(f"{asked}\n    {problem}")
    published = await world.aggregator.drain()
    if published:
        failures.append(f"{published} usage message(s) of refused calls reached the topic")
    after = await _victim_view(victim)
    changed = [path for path in before if before[path] != after[path]]
    if changed:
        failures.append(f"what the victim reads changed: {changed}")
    assert not failures, f"{attacker} on {target}'s objects:\n" + "\n".join(failures)


def test_every_served_operation_has_its_probes(world: World) -> None:
    missing = sorted(world.served - set(OPERATIONS))
    stale = sorted(set(OPERATIONS) - world.served)
    assert not missing, f"operations without isolation probes in OPERATIONS: {missing}"
    assert not stale, f"probes for operations the API no longer serves: {stale}"
    # Every operation is probed against the sandbox objects of another account.
    me, victim = world.parties["B sandbox"], world.parties["A sandbox"]
    probed = {p.op for p in _probes(me, victim)}
    assert probed == set(OPERATIONS), sorted(set(OPERATIONS) - probed)


async def test_another_accounts_key_reaches_none_of_its_objects(world: World) -> None:
    await _run(world, "B sandbox", "A sandbox")


async def test_a_live_key_reaches_none_of_the_sandbox_objects(world: World) -> None:
    await _run(world, "A live", "A sandbox")


async def test_a_sandbox_key_reaches_none_of_the_live_objects(world: World) -> None:
    await _run(world, "A sandbox", "A live")
