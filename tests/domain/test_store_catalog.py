"""Products, prices, customers and payment methods are stored by ``domain.store.catalog`` and
``domain.store.customers`` alone: no role module writes SQL on those tables. And the store's
reads return what its writes stored, scoped to the account and mode asked for."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from domain.accounts import create_account
from domain.payments import resolve_test_method
from domain.pricing import parse_price_terms, terms_to_json
from domain.store import catalog, customers
from domain.tenant import Tenant
from tests.support.sqlscan import ROOT, modules, sql_tables

ROLES = ("ingest", "control", "dashboard", "aggregator", "invoicer", "dispatcher")
TABLES = ("products", "prices", "customers", "payment_methods")
_KEYWORDS = "FROM|INTO|UPDATE"


def _hits() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in modules(ROLES):
        hits = sql_tables(path.read_text(), TABLES, keywords=_KEYWORDS)
        if hits:
            found[path.relative_to(ROOT).as_posix()] = hits
    return found


def test_the_pattern_sees_the_statements_it_guards() -> None:
    """The scan itself: it finds each kind of statement, and not table names in prose."""
    sql = (
        'q = ("SELECT * FROM prices WHERE id = $1" "INSERT INTO customers (id) VALUES ($1)"'
        ' "UPDATE products SET name = $2" "DELETE FROM payment_methods")'
    )
    assert sql_tables(sql, TABLES, keywords=_KEYWORDS) == [
        "prices",
        "customers",
        "products",
        "payment_methods",
    ]
    prose = 'm = "prices come from products; customers updated from prices_x"'
    assert not sql_tables(prose, TABLES, keywords=_KEYWORDS)


def test_no_role_module_writes_sql_on_the_catalog_or_customer_tables() -> None:
    hits = _hits()
    assert (ROOT / "control" / "catalog.py").is_file()
    assert (ROOT / "control" / "customers.py").is_file()
    assert not hits, (
        f"SQL on {', '.join(TABLES)} belongs in domain/store/catalog.py or"
        f" domain/store/customers.py: {hits}"
    )


@pytest.fixture
async def tenant(pool: asyncpg.Pool) -> Tenant:
    async with pool.acquire() as conn:
        account_id, _, _ = await create_account(conn, f"store-{uuid.uuid4().hex[:6]}")
    return Tenant(account_id=account_id, livemode=False)


async def test_catalog_reads_what_it_wrote_within_the_tenant(
    pool: asyncpg.Pool, tenant: Tenant
) -> None:
    other = Tenant(account_id=tenant.account_id, livemode=True)
    product = await catalog.insert_product(
        pool, tenant, name="Widget", description=None, metadata={"k": "v"}
    )
    assert (product["name"], product["metadata"]) == ("Widget", {"k": "v"})
    assert await catalog.product_exists(pool, tenant, product["id"])
    assert not await catalog.product_exists(pool, other, product["id"])
    terms = parse_price_terms({"currency": "usd", "unitAmount": 250})
    price = await catalog.insert_price(
        pool,
        tenant,
        product_id=product["id"],
        currency=terms.currency,
        terms=terms_to_json(terms),
        interval="month",
        interval_count=1,
        usage_type="licensed",
        aggregate_usage=None,
        nickname="basic",
        metadata={},
    )
    assert price["product_id"] == product["id"]
    owned = await catalog.tenant_price(pool, tenant, price["id"])
    assert owned is not None and owned["nickname"] == "basic"
    assert await catalog.tenant_price(pool, other, price["id"]) is None
    unscoped = await catalog.price(pool, price["id"])
    assert unscoped is not None and unscoped["id"] == price["id"]
    assert await catalog.price(pool, "price_missing") is None
    (row,) = await catalog.pricing_rows(pool, [price["id"], "price_missing"])
    assert (row["id"], row["name"], row["usage_type"]) == (price["id"], "Widget", "licensed")
    assert parse_price_terms(row["terms"]) == terms


async def test_customers_and_their_methods(pool: asyncpg.Pool, tenant: Tenant) -> None:
    other = Tenant(account_id=tenant.account_id, livemode=True)
    method = resolve_test_method("pm_card_visa")
    assert method is not None
    async with pool.acquire() as conn, conn.transaction():
        named = f"cust_{uuid.uuid4().hex[:8]}"
        row = await customers.insert_customer(
            conn, tenant, customer_id=named, name="Ada", email=None, metadata={}
        )
        assert row["id"] == named
        with pytest.raises(asyncpg.UniqueViolationError):
            async with conn.transaction():
                await customers.insert_customer(
                    conn, tenant, customer_id=named, name=None, email=None, metadata={}
                )
        assert await customers.customer_pk(conn, tenant, named) == row["pk"]
        assert await customers.customer_pk(conn, other, named) is None
        pm_id = await customers.insert_payment_method(conn, tenant, row["pk"], method)
        assert (await customers.customer_by_pk(conn, row["pk"]))["default_pm"] == pm_id
        await customers.update_customer(
            conn,
            row["pk"],
            name=(False, None),
            email=(True, "ada@example.com"),
            metadata=(True, {"tier": "gold"}),
            clear_default_method=False,
        )
        updated = await customers.customer_by_pk(conn, row["pk"])
        assert (updated["name"], updated["email"], updated["metadata"]) == (
            "Ada",
            "ada@example.com",
            {"tier": "gold"},
        )
        assert updated["default_pm"] == pm_id
        await customers.update_customer(
            conn,
            row["pk"],
            name=(True, None),
            email=(False, None),
            metadata=(False, {}),
            clear_default_method=True,
        )
        cleared = await customers.customer_by_pk(conn, row["pk"])
        assert (cleared["name"], cleared["email"], cleared["default_pm"]) == (
            None,
            "ada@example.com",
            None,
        )
    pm = await customers.payment_method(pool, tenant, pm_id)
    assert pm is not None
    assert (pm["customer_id"], pm["brand"], pm["last4"]) == (named, method.brand, method.last4)
    assert await customers.payment_method(pool, other, pm_id) is None
