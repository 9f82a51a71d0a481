"""The alert rules: promtool checks and unit-tests them, they read only metrics the code
exports, each has a unit test and a runbook in deploy/README.md, and the PrometheusRule
for Kubernetes carries the same groups."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.support import DEPLOY, exported_metrics, load_all, run, tool, vinr_metrics

RULES = DEPLOY / "prometheus" / "alerts.yml"
UNIT_TESTS = DEPLOY / "prometheus" / "tests" / "alerts_test.yml"


def alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = tool("promtool")
    assert "SUCCESS: 9 rules found" in run(promtool, "check", "rules", str(RULES))
    out = run(promtool, "test", "rules", str(UNIT_TESTS), cwd=UNIT_TESTS.parent)
    assert "SUCCESS" in out and "FAILED" not in out


def test_the_compose_prometheus_loads_the_rules() -> None:
    out = run(tool("promtool"), "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert "SUCCESS: 9 rules found" in out


def test_every_alert_reads_exported_metrics_only() -> None:
    exported = exported_metrics()
    for rule in alerts():
        names = vinr_metrics(rule["expr"])
        assert names, f"{rule['alert']} reads no vinr metric"
        assert names <= exported, f"{rule['alert']}: not exported: {names - exported}"


def test_every_alert_has_a_unit_test() -> None:
    spec = yaml.safe_load(UNIT_TESTS.read_text())
    tested = {
        case["alertname"]
        for test in spec["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")  # a case that expects it to fire, not only silence
    }
    assert {rule["alert"] for rule in alerts()} == tested


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in heads}


def test_every_alert_links_its_runbook_in_the_deploy_readme() -> None:
    anchors = _anchors((DEPLOY / "README.md").read_text())
    for rule in alerts():
        url = rule["annotations"]["runbook_url"]
        assert url == f"deploy/README.md#{rule['alert'].lower()}", url
        assert url.split("#", 1)[1] in anchors, f"no runbook section for {rule['alert']}"
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert rule["annotations"]["summary"]


def test_the_prometheusrule_carries_the_same_groups() -> None:
    (doc,) = load_all((DEPLOY / "k8s" / "base" / "prometheusrule.yaml").read_text())
    assert doc["kind"] == "PrometheusRule"
    assert doc["spec"] == yaml.safe_load(RULES.read_text())
