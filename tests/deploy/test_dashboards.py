"""The Grafana dashboard: every query is valid PromQL (promtool parses it as a recording
rule) and names metrics the code exports, panels do not overlap, and each role has a
saturation panel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.support import DEPLOY, exported_metrics, run, tool, vinr_metrics

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "vinr.json"

# Prometheus's own series.
PROMETHEUS = {"up"}


def panels() -> list[dict[str, Any]]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries() -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in panels() for t in p["targets"]]


def test_every_query_names_exported_metrics() -> None:
    exported = exported_metrics()
    for title, expr in queries():
        names = vinr_metrics(expr) or {n for n in PROMETHEUS if n in expr}
        assert names, f"{title}: {expr} names no metric"
        unknown = names - exported - PROMETHEUS
        assert not unknown, f"{title}: not exported: {unknown}"


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    # Grafana's interval variables become a fixed range so promtool can parse the query.
    rules = [
        {"record": f"dashboard:q{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(queries())
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in run(
        tool("promtool"), "check", "rules", str(path)
    )


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine


def test_each_role_has_a_saturation_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = [p["title"] for p in dashboard["panels"]]
    start = titles.index("Saturation")
    following = [p for p in dashboard["panels"][start + 1 :]]
    end = next(i for i, p in enumerate(following) if p["type"] == "row")
    reads = {n for p in following[:end] for t in p["targets"] for n in vinr_metrics(t["expr"])}
    for role_metric in (
        "vinr_ingest_inflight_limit",  # api
        "vinr_aggregator_lag",  # aggregator
        "vinr_aggregator_batch_seconds_bucket",
        "vinr_invoicer_last_pass_timestamp_seconds",  # invoicer
        "vinr_webhook_oldest_due_seconds",  # dispatcher
        "vinr_db_pool_connections_in_use",  # every role's Postgres pool
    ):
        assert role_metric in reads, role_metric
