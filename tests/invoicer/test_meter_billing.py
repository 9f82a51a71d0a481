"""Prices billing a meter, invoiced: a meter item's line is its customer's usage of the meter
over the item's period by the meter's formula, beside usage-record items on one invoice;
the meter's invoiced boundaries move when the invoice is marked closing and finalized; the
upcoming invoice is the final invoice ahead of time.

Meter usage is written straight into the ledger and the minute buckets here (as the
aggregator would write them), and every expectation is reckoned in the test from the events
themselves."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from fractions import Fraction
from typing import Any

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from domain.accounts import create_account
from domain.billing import InvoiceRules, close_periods, finalize_invoices, mark_closing
from infra.ids import new_id
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import (
    DAY,
    FEB,
    T0,
    advance,
    clocked_subscription,
    customer,
    get,
    invoices,
    lines_by_price,
    price,
    usage,
)

_OFFSETS = itertools.count(1)  # arrival order of the events written here
CHANGE = T0 + 10 * DAY + 30  # inside a minute: the split must follow timestamps exactly


async def account_of(pool: asyncpg.Pool, client: httpx.AsyncClient) -> str:
    product = await post(client, "/v1/products", {"name": "probe"})
    account: str = await pool.fetchval(
        "SELECT account_id FROM products WHERE id = $1", product["id"]
    )
    return account


async def new_meter(
    pool: asyncpg.Pool,
    account: str,
    formula: str = "sum",
    *,
    status: str = "active",
    livemode: bool = False,
) -> tuple[int, str, str]:
    """(pk, id, event name) of a new meter of the account's sandbox."""
    meter_id, event = new_id("mtr"), f"api_calls_{new_id('e')}"
    pk: int = await pool.fetchval(
        "INSERT INTO meters (id, account_id, livemode, display_name, event_name, formula,"
        " status, created, updated) VALUES ($1, $2, $3, 'API calls', $4, $5, $6, $7, $7)"
        " RETURNING pk",
        meter_id,
        account,
        livemode,
        event,
        formula,
        status,
        T0,
    )
    return pk, meter_id, event


async def meter_price(client: httpx.AsyncClient, meter_id: str, **pricing: Any) -> dict[str, Any]:
    product = await post(client, "/v1/products", {"name": "Metered API"})
    body: dict[str, Any] = {
        "product": product["id"],
        "currency": "EUR",
        "recurring": {"interval": "month", "usageType": "metered", "meter": meter_id},
    }
    return await post(client, "/v1/prices", body | (pricing or {"unitAmount": 10}))


async def customer_pk(pool: asyncpg.Pool, sub: dict[str, Any]) -> int:
    pk: int = await pool.fetchval("SELECT pk FROM customers WHERE id = $1", sub["customer"])
    return pk


async def record(
    pool: asyncpg.Pool, meter_pk: int, cust_pk: int, events: list[tuple[int, str]]
) -> None:
    """Counted events (ts, value) in the ledger, and the minute buckets rebuilt from it."""
    await pool.executemany(
        "INSERT INTO meter_events (meter_pk, identifier, customer_pk, ts, value, accepted_at,"
        " kafka_partition, kafka_offset, kafka_index) VALUES ($1, $2, $3, $4, $5, $4, 0, $6, 0)",
        [(meter_pk, new_id("mevt"), cust_pk, ts, Decimal(v), next(_OFFSETS)) for ts, v in events],
    )
    latest = "ORDER BY ts DESC, kafka_offset DESC, kafka_index DESC"
    await pool.execute(
        "INSERT INTO meter_buckets (meter_pk, customer_pk, minute, total, events, max, last_ts,"
        " last_value, last_seq, updated)"
        f" SELECT meter_pk, customer_pk, ts - ts % 60, sum(value), count(*), max(value),"
        f" (array_agg(ts {latest}))[1], (array_agg(value {latest}))[1],"
        f" (array_agg(kafka_offset::numeric * 1000000 + kafka_index {latest}))[1], 0"
        " FROM meter_events WHERE meter_pk = $1 AND customer_pk = $2 AND value IS NOT NULL"
        " AND cancelled_at IS NULL AND rejected IS NULL GROUP BY 1, 2, 3"
        " ON CONFLICT (meter_pk, customer_pk, minute) DO UPDATE SET total = EXCLUDED.total,"
        " events = EXCLUDED.events, max = EXCLUDED.max, last_ts = EXCLUDED.last_ts,"
        " last_value = EXCLUDED.last_value, last_seq = EXCLUDED.last_seq",
        meter_pk,
        cust_pk,
    )


def half_up(value: Fraction) -> int:
    return math.floor(value + Fraction(1, 2))


def decimal_text(value: Fraction) -> str:
    """A fraction with a terminating decimal expansion, in plain digits."""
    whole, rest = divmod(value.numerator, value.denominator)
    digits = ""
    while rest:
        rest *= 10
        digit, rest = divmod(rest, value.denominator)
        digits += str(digit)
    return f"{whole}.{digits}" if digits else str(whole)


async def upcoming(client: httpx.AsyncClient, sub: dict[str, Any]) -> dict[str, Any]:
    return await get(client, f"/v1/invoices/upcoming?subscription={sub['id']}")


def comparable(invoice: dict[str, Any]) -> dict[str, Any]:
    """What the upcoming invoice must share with the final one."""
    keys = ("type", "quantity", "quantityDecimal", "amount", "description", "period")
    return {
        "totals": (invoice["subtotal"], invoice["total"], invoice["amountDue"]),
        "period": (invoice["periodStart"], invoice["periodEnd"], invoice["billingReason"]),
        "customer": invoice["customer"],
        "lines": sorted(
            (
                (
                    ln["price"]["id"] if ln["price"] else None,
                    ln["subscriptionItem"],
                    *(str(ln[k]) for k in keys),
                )
                for ln in invoice["lines"]["data"]
            ),
        ),
    }


GRADUATED = {
    "billingScheme": "tiered",
    "tiersMode": "graduated",
    "tiers": [
        {"upTo": 10, "unitAmount": 100},
        {"upTo": "inf", "unitAmountDecimal": "12.5"},
    ],
}


async def test_a_usage_record_item_and_a_meter_item_bill_on_one_invoice(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator, invoicer: Invoicer
) -> None:
    account = await account_of(pool, client)
    meter_pk, meter_id, _ = await new_meter(pool, account, "sum")
    legacy = await price(client, unitAmount=2)
    metered = await meter_price(client, meter_id, **GRADUATED)
    seats = await price(client, metered=False, unitAmount=1000, product="Seats")
    sub = await clocked_subscription(
        client,
        [{"price": legacy["id"]}, {"price": metered["id"]}, {"price": seats["id"], "quantity": 3}],
    )
    items = {i["price"]["id"]: i["id"] for i in sub["items"]["data"]}
    cust = await customer_pk(pool, sub)
    values = [(T0 + 60, "2.5"), (T0 + 5 * DAY + 17, "7.25"), (FEB - 1, "4.000000000001")]
    await record(pool, meter_pk, cust, values)
    await record(pool, meter_pk, cust, [(FEB, "1000"), (T0 - 60, "1000")])  # outside
    other = await clocked_subscription(client, [{"price": metered["id"]}])
    await record(pool, meter_pk, await customer_pk(pool, other), [(T0 + 60, "500")])
    await usage(client, items[legacy["id"]], 100, T0 + 60)
    await aggregator.drain()
    await advance(client, sub, T0 + 20 * DAY)
    ahead = await upcoming(client, sub)
    await advance(client, sub, FEB)
    await invoicer.tick()

    [_, invoice] = await invoices(client, sub["id"])
    assert (invoice["billingReason"], invoice["status"]) == ("subscription_cycle", "paid")
    lines = lines_by_price(invoice)
    used = sum((Fraction(v) for _, v in values), Fraction(0))
    expected = half_up(10 * 100 + (used - 10) * Fraction("12.5"))
    line = lines[metered["id"]]
    assert line["quantityDecimal"] == decimal_text(used) == "13.750000000001"
    assert line["quantity"] == float(used)
    assert line["amount"] == expected
    assert line["subscriptionItem"] == items[metered["id"]]
    assert line["period"] == {"start": T0, "end": FEB}
    assert line["price"]["recurring"]["meter"] == meter_id
    assert line["unitAmountDecimal"] is None
    assert (lines[legacy["id"]]["quantity"], lines[legacy["id"]]["amount"]) == (100, 200)
    assert lines[legacy["id"]]["quantityDecimal"] == "100"
    assert lines[legacy["id"]]["price"]["recurring"]["meter"] is None
    assert (lines[seats["id"]]["quantity"], lines[seats["id"]]["amount"]) == (3, 3000)
    assert invoice["total"] == expected + 200 + 3000
    assert comparable(ahead) == comparable(invoice)
    assert ahead["id"] is None and ahead["status"] == "draft"
    assert all(ln["id"] is None for ln in ahead["lines"]["data"])
    closes = await pool.fetchrow(
        "SELECT closing_until, closed_until FROM meter_closes WHERE meter_pk = $1"
        " AND customer_pk = $2",
        meter_pk,
        cust,
    )
    assert (closes["closing_until"], closes["closed_until"]) == (FEB, FEB)


@pytest.mark.parametrize(
    ("formula", "quantity"),
    [("sum", "22.5"), ("max", "9.5"), ("last", "6"), ("count", "4")],
)
async def test_each_formula_bills_its_figure(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    invoicer: Invoicer,
    formula: str,
    quantity: str,
) -> None:
    account = await account_of(pool, client)
    meter_pk, meter_id, _ = await new_meter(pool, account, formula)
    p = await meter_price(client, meter_id, unitAmount=10)
    sub = await clocked_subscription(client, [{"price": p["id"]}])
    # The last two share a timestamp: the later arrival is the last event.
    events = [(T0 + 60, "3"), (T0 + 120, "9.5"), (T0 + 180, "4"), (T0 + 180, "6")]
    await record(pool, meter_pk, await customer_pk(pool, sub), events)
    values = [Fraction(v) for _, v in events]
    reckoned = {
        "sum": sum(values, Fraction(0)),
        "max": max(values),
        "last": values[-1],
        "count": Fraction(len(values)),
    }[formula]
    assert decimal_text(reckoned) == quantity
    await advance(client, sub, FEB)
    await invoicer.tick()
    [invoice] = await invoices(client, sub["id"])
    [line] = invoice["lines"]["data"]
    assert line["quantityDecimal"] == quantity
    assert line["amount"] == half_up(reckoned * 10)
    assert invoice["total"] == line["amount"]


async def test_a_price_change_splits_meter_usage_by_timestamp(
    client: httpx.AsyncClient, pool: asyncpg.Pool, invoicer: Invoicer
) -> None:
    account = await account_of(pool, client)
    meter_pk, meter_id, _ = await new_meter(pool, account, "sum")
    old = await meter_price(client, meter_id, unitAmount=100)
    new = await meter_price(client, meter_id, unitAmount=40)
    sub = await clocked_subscription(client, [{"price": old["id"]}])
    item = sub["items"]["data"][0]["id"]
    cust = await customer_pk(pool, sub)
    before = [(T0 + 60, "1.5"), (CHANGE - 10, "2")]  # the second in the change's minute
    after = [(CHANGE, "0.25"), (CHANGE + 5, "3"), (FEB - 60, "1")]
    await record(pool, meter_pk, cust, before + after)
    await advance(client, sub, CHANGE)
    await post(
        client, f"/v1/subscriptions/{sub['id']}", {"items": [{"id": item, "price": new["id"]}]}
    )
    ahead = await upcoming(client, sub)
    await advance(client, sub, FEB)
    await invoicer.tick()

    [invoice] = await invoices(client, sub["id"])
    lines = lines_by_price(invoice)
    used_before = sum((Fraction(v) for _, v in before), Fraction(0))
    used_after = sum((Fraction(v) for _, v in after), Fraction(0))
    assert lines[old["id"]]["period"] == {"start": T0, "end": CHANGE}
    assert lines[old["id"]]["quantityDecimal"] == decimal_text(used_before) == "3.5"
    assert lines[old["id"]]["amount"] == half_up(used_before * 100)
    assert lines[new["id"]]["period"] == {"start": CHANGE, "end": FEB}
    assert lines[new["id"]]["quantityDecimal"] == decimal_text(used_after) == "4.25"
    assert lines[new["id"]]["amount"] == half_up(used_after * 40)
    assert invoice["total"] == half_up(used_before * 100) + half_up(used_after * 40)
    assert comparable(ahead) == comparable(invoice)


@pytest.mark.parametrize("kind", ["legacy", "meter", "mixed"])
async def test_the_upcoming_invoice_is_the_final_invoice_when_nothing_else_arrives(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    aggregator: Aggregator,
    invoicer: Invoicer,
    kind: str,
) -> None:
    account = await account_of(pool, client)
    meter_pk, meter_id, _ = await new_meter(pool, account, "max")
    legacy = await price(client, aggregate="last_during_period", unitAmountDecimal="0.5")
    metered = await meter_price(client, meter_id, unitAmountDecimal="3.3")
    seats = await price(client, metered=False, unitAmount=700, product="Seats")
    chosen = {"legacy": [legacy], "meter": [metered], "mixed": [legacy, metered]}[kind]
    sub = await clocked_subscription(
        client, [{"price": p["id"]} for p in chosen] + [{"price": seats["id"], "quantity": 2}]
    )
    items = {i["price"]["id"]: i["id"] for i in sub["items"]["data"]}
    await advance(client, sub, T0 + 4 * DAY)
    if legacy["id"] in items:
        await usage(client, items[legacy["id"]], 41, T0 + 60)
        await usage(client, items[legacy["id"]], 37, T0 + 3 * DAY)
        await aggregator.drain()
    if metered["id"] in items:
        await record(
            pool, meter_pk, await customer_pk(pool, sub), [(T0 + 90, "1.7"), (T0 + DAY, "0.9")]
        )
    count_invoices = "SELECT count(*) FROM invoices WHERE subscription_id = $1"
    count_events = "SELECT count(*) FROM events WHERE account_id = $1"
    stored = await pool.fetchval(count_invoices, sub["id"])
    announced = await pool.fetchval(count_events, account)
    ahead = await upcoming(client, sub)
    assert await upcoming(client, sub) == ahead  # the clock stands still: so does the answer
    assert await pool.fetchval(count_invoices, sub["id"]) == stored  # not stored
    assert await pool.fetchval(count_events, account) == announced  # not announced
    await advance(client, sub, FEB)
    await invoicer.tick()
    [_, invoice] = await invoices(client, sub["id"])
    assert comparable(ahead) == comparable(invoice)
    expected = {"legacy": 19, "meter": 6, "mixed": 25}[kind] + 1400  # 37 × 0.5; 1.7 × 3.3
    assert invoice["total"] == expected


async def test_upcoming_refuses_a_canceled_subscription_with_nothing_to_bill(
    client: httpx.AsyncClient, invoicer: Invoicer
) -> None:
    p = await price(client, unitAmount=2)
    sub = await clocked_subscription(client, [{"price": p["id"]}], cancelAtPeriodEnd=True)
    await advance(client, sub, FEB)
    await invoicer.tick()
    assert (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"] == "canceled"
    response = await client.get("/v1/invoices/upcoming", params={"subscription": sub["id"]})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "subscription"
    assert "canceled" in response.json()["error"]["message"]
    missing = await client.get("/v1/invoices/upcoming", params={"subscription": "sub_nope"})
    assert missing.status_code == 404
    assert (await client.get("/v1/invoices/upcoming")).status_code == 400


async def test_meter_boundaries_move_when_the_invoice_is_closing_and_finalized(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    account = await account_of(pool, client)
    meter_pk, meter_id, _ = await new_meter(pool, account, "sum")
    p = await meter_price(client, meter_id, unitAmount=10)
    sub = await clocked_subscription(client, [{"price": p["id"]}])
    cust = await customer_pk(pool, sub)
    await record(pool, meter_pk, cust, [(T0 + 60, "2")])
    await advance(client, sub, FEB)

    def bounds() -> Any:
        return pool.fetchrow(
            "SELECT closing_until, closed_until FROM meter_closes WHERE meter_pk = $1"
            " AND customer_pk = $2",
            meter_pk,
            cust,
        )

    async with pool.acquire() as conn:
        [(invoice_id, _)] = await close_periods(
            conn, [sub["id"]], InvoiceRules.from_settings(settings)
        )
        assert await bounds() is None  # a draft moves nothing
        epoch = await pool.fetchval("SELECT epoch FROM meter_epoch")
        await mark_closing(conn, [invoice_id])
        assert tuple(await bounds()) == (FEB, 0)
        assert await pool.fetchval("SELECT epoch FROM meter_epoch") > epoch
        # Counted before the finalize (accepted before closing): it is billed.
        await record(pool, meter_pk, cust, [(FEB - 30, "5")])
        assert await finalize_invoices(conn, [invoice_id], settled_before=2**40)
        assert tuple(await bounds()) == (FEB, FEB)
    invoice = await get(client, f"/v1/invoices/{invoice_id}")
    assert [ln["quantityDecimal"] for ln in invoice["lines"]["data"]] == ["7"]
    assert invoice["total"] == 70


async def test_moving_a_test_clock_or_advancing_a_period_bumps_the_meter_epoch(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    p = await price(client, unitAmount=2)
    sub = await clocked_subscription(client, [{"price": p["id"]}])
    epoch = await pool.fetchval("SELECT epoch FROM meter_epoch")
    await advance(client, sub, T0 + DAY)
    moved = await pool.fetchval("SELECT epoch FROM meter_epoch")
    assert moved > epoch
    await post(client, f"/v1/test_helpers/subscriptions/{sub['id']}/advance_period")
    assert await pool.fetchval("SELECT epoch FROM meter_epoch") > moved


async def test_usage_records_for_a_meter_item_are_refused(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, meter_id, event = await new_meter(pool, await account_of(pool, client), "sum")
    p = await meter_price(client, meter_id)
    sub = await clocked_subscription(client, [{"price": p["id"]}])
    item = sub["items"]["data"][0]["id"]
    assert sub["items"]["data"][0]["price"]["recurring"]["meter"] == meter_id
    for path, body in (
        ("/v1/usage_records", {"subscriptionItem": item, "quantity": 3, "timestamp": T0 + 60}),
        (
            "/v1/usage_records/batch",
            {"subscriptionItem": item, "records": [{"quantity": 3, "timestamp": T0 + 60}]},
        ),
    ):
        response = await client.post(path, json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("item_bills_meter", "subscriptionItem")
        assert f"eventName '{event}'" in error["message"]


async def test_a_meter_price_renders_its_meter_everywhere(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    _, meter_id, _ = await new_meter(pool, await account_of(pool, client), "sum")
    created = await meter_price(client, meter_id, unitAmountDecimal="0.5")
    assert created["recurring"] == {
        "interval": "month",
        "intervalCount": 1,
        "usageType": "metered",
        "aggregateUsage": None,
        "meter": meter_id,
    }
    assert (await get(client, f"/v1/prices/{created['id']}"))["recurring"]["meter"] == meter_id
    listed = {p["id"]: p for p in (await get(client, "/v1/prices?limit=100"))["data"]}
    assert listed[created["id"]]["recurring"]["meter"] == meter_id
    legacy = await price(client)
    assert legacy["recurring"]["meter"] is None
    assert listed.get(legacy["id"]) is None or listed[legacy["id"]]["recurring"]["meter"] is None


@pytest.mark.parametrize(
    ("recurring", "param", "words"),
    [
        ({"aggregateUsage": "sum"}, "recurring.aggregateUsage", "meter's formula"),
        ({"usageType": "licensed"}, "recurring.usageType", "usageType = 'metered'"),
        ({"usageType": None}, "recurring.usageType", "usageType = 'metered'"),
        ({"meter": "mtr_nope"}, "recurring.meter", "no such meter"),
        ({"meter": "inactive"}, "recurring.meter", "inactive"),
        ({"meter": "foreign"}, "recurring.meter", "no such meter"),
        ({"meter": "live"}, "recurring.meter", "no such meter"),
    ],
)
async def test_bad_meter_prices_are_400s_naming_the_param(
    client: httpx.AsyncClient,
    pool: asyncpg.Pool,
    recurring: dict[str, Any],
    param: str,
    words: str,
) -> None:
    account = await account_of(pool, client)
    _, meter_id, _ = await new_meter(pool, account, "sum")
    stand_ins = {
        "inactive": (await new_meter(pool, account, status="inactive"))[1],
        "live": (await new_meter(pool, account, livemode=True))[1],
    }
    async with pool.acquire() as conn:
        other, _, _ = await create_account(conn, f"other-{new_id('a')[-6:]}")
    stand_ins["foreign"] = (await new_meter(pool, other))[1]
    product = await post(client, "/v1/products", {"name": "Metered API"})
    body: dict[str, Any] = {
        "product": product["id"],
        "currency": "EUR",
        "unitAmount": 5,
        "recurring": {"interval": "month", "usageType": "metered", "meter": meter_id},
    }
    for key, value in recurring.items():
        body["recurring"][key] = stand_ins.get(value, value) if isinstance(value, str) else value
    body["recurring"] = {k: v for k, v in body["recurring"].items() if v is not None}
    before = await pool.fetchval("SELECT count(*) FROM prices WHERE account_id = $1", account)
    response = await client.post("/v1/prices", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert words in error["message"]
    assert (
        await pool.fetchval("SELECT count(*) FROM prices WHERE account_id = $1", account) == before
    )


async def test_a_customer_with_meter_usage_but_another_customer_item_is_not_billed(
    client: httpx.AsyncClient, pool: asyncpg.Pool, invoicer: Invoicer
) -> None:
    """Usage is the item's customer's only; a customer without events bills zero."""
    account = await account_of(pool, client)
    meter_pk, meter_id, _ = await new_meter(pool, account, "sum")
    p = await meter_price(client, meter_id, unitAmount=10)
    stranger = await customer(client)
    stranger_pk = await pool.fetchval("SELECT pk FROM customers WHERE id = $1", stranger["id"])
    await record(pool, meter_pk, stranger_pk, [(T0 + 60, "9")])
    sub = await clocked_subscription(client, [{"price": p["id"]}])
    await advance(client, sub, FEB)
    await invoicer.tick()
    [invoice] = await invoices(client, sub["id"])
    [line] = invoice["lines"]["data"]
    assert (line["quantity"], line["quantityDecimal"], line["amount"]) == (0, "0", 0)
