"""The SQL of subscriptions, their items, price changes, test clocks, pending invoice items,
invoices, their lines, charges and the usage windows the summaries read lives in
``domain.store.subscriptions`` and ``domain.store.invoices``: the role modules that serve
the API (``control/``, ``dispatcher/``) write none of it, and the subscription item query
the renderings share is written once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.sqlscan import ROOT, modules, sql_tables, string_literals

ROLES = ("control", "dashboard", "dispatcher")
STORES = ("domain/store/subscriptions.py", "domain/store/invoices.py")
TABLES = (
    "subscriptions",
    "subscription_items",
    "subscription_item_price_changes",
    "test_clocks",
    "invoice_items",
    "invoices",
    "invoice_lines",
    "charges",
    "usage_windows",
)
_KEYWORDS = "FROM|INTO|UPDATE|JOIN"


def _strings(path: Path) -> list[str]:
    return string_literals(path.read_text())


def _statements(path: Path) -> list[str]:
    return sql_tables(path.read_text(), TABLES, keywords=_KEYWORDS)


def _role_modules() -> list[Path]:
    return modules(ROLES)


def test_the_scan_sees_split_and_formatted_statements(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'a = ("SELECT * FROM"\n    " test_clocks WHERE id = $1")\n'
        'b = f"UPDATE subscriptions SET x = {1}"\n'
        'c = "INSERT INTO invoice_items (id) VALUES ($1)"\n'
        'd = "SELECT * FROM customers"\n'
    )
    assert sorted(_statements(sample)) == [
        "invoice_items",
        "subscriptions",
        "test_clocks",
    ]


@pytest.mark.parametrize("module", _role_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_role_modules_write_no_sql_for_these_tables(module: Path) -> None:
    assert _statements(module) == [], (
        f"{module.relative_to(ROOT)} queries these tables itself; use domain.store"
    )


def test_the_stores_hold_the_statements() -> None:
    """Each table of the family is reached from its store (the scan above has teeth); the
    charge list is the generic ``page`` over ``charges`` with the store's filter."""
    seen = {t for store in STORES for t in _statements(ROOT / store)}
    assert seen == set(TABLES) - {"charges"}


def test_the_subscription_item_query_is_written_once() -> None:
    holders = [
        p.relative_to(ROOT).as_posix()
        for layer in (
            "control",
            "dashboard",
            "dispatcher",
            "domain",
            "invoicer",
            "aggregator",
            "ingest",
        )
        for p in (ROOT / layer).rglob("*.py")
        if any("SELECT si.* FROM subscription_items si" in s for s in _strings(p))
    ]
    assert holders == ["domain/store/subscriptions.py"]


def test_only_itemmeta_writes_the_subscription_version() -> None:
    bump = re.compile(r"\bversion\s*=\s*(?:s\.)?version\s*\+")
    writers = sorted(
        p.relative_to(ROOT).as_posix()
        for layer in (
            "control",
            "dashboard",
            "dispatcher",
            "domain",
            "invoicer",
            "aggregator",
            "ingest",
        )
        for p in (ROOT / layer).rglob("*.py")
        if any(bump.search(s) for s in _strings(p))
    )
    assert writers == ["domain/itemmeta.py"]
