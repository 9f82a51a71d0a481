"""SQL on events, webhook endpoints, deliveries and attempts lives in the domain store only:
no role module writes a statement on those tables, or names one for a generic helper."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.sqlscan import ROOT, modules, sql_tables

ROLES = ("ingest", "control", "dashboard", "aggregator", "invoicer", "dispatcher")
STORE = ("domain/store/webhooks.py", "domain/store/delivery_queue.py")
TABLES = ("events", "webhook_endpoints", "webhook_deliveries", "webhook_attempts")


def family_sql(source: str) -> list[str]:
    """The tables of the family this source uses as SQL: in a statement, or alone (a table
    name handed to a generic query helper)."""
    return sql_tables(source, TABLES, bare_names=True)


def _role_modules() -> list[Path]:
    return modules(ROLES)


def test_the_scan_sees_statements_and_table_names() -> None:
    source = (
        '"""Deliveries come FROM events."""\n'
        'q = "SELECT d.* FROM webhook_deliveries d JOIN events e ON e.id = d.event_id"\n'
        'r = f"INSERT INTO webhook_attempts VALUES ({q})"\n'
        'page(table="webhook_endpoints")\n'
        'note = "events are signed"\n'
    )
    assert sorted(family_sql(source)) == [
        "events",
        "webhook_attempts",
        "webhook_deliveries",
        "webhook_endpoints",
    ]


def test_the_store_holds_statements_on_every_table() -> None:
    seen: set[str] = set()
    for path in STORE:
        seen.update(family_sql((ROOT / path).read_text()))
    assert seen == set(TABLES)


def test_role_modules_exist() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _role_modules()}
    assert {"control/webhooks.py", "dispatcher/worker.py"} <= names


@pytest.mark.parametrize("path", _role_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_role_module_writes_sql_on_the_webhook_tables(path: Path) -> None:
    hits = family_sql(path.read_text())
    assert not hits, f"{path.relative_to(ROOT)} has SQL on {sorted(set(hits))}; use domain.store"
