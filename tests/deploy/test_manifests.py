"""The Kubernetes manifests and the compose stack, offline: kustomize builds every overlay
with the pinned kubectl, kubernetes-validate checks each object against the Kubernetes
1.37 schemas (strict: unknown fields are errors), and the rules the deploy notes state
hold in what is built."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy.support import DEPLOY, load_all, run, tool

K8S = DEPLOY / "k8s"
BUILDS = ("overlays/dev", "overlays/prod", "kafka")
ROLES = ("api", "aggregator", "invoicer", "dispatcher")
KUBERNETES = "1.37"
# Custom resources kubernetes-validate has no schema for. They are checked below by what
# vinr relies on (the PrometheusRule's groups by promtool, in test_alerts), and the test
# asserts these are exactly the kinds left out of the schema check.
NOT_SCHEMA_CHECKED = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("kafka.strimzi.io/v1beta2", "Kafka"),
    ("kafka.strimzi.io/v1beta2", "KafkaNodePool"),
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"),
}


def build(path: str) -> list[dict[str, Any]]:
    return load_all(run(tool("kubectl"), "kustomize", str(K8S / path)))


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {path: build(path) for path in BUILDS}


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_object_validates_against_the_pinned_schemas(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    unchecked: set[tuple[str, str]] = set()
    for path, docs in built.items():
        assert docs, path
        for doc in docs:
            try:
                kubernetes_validate.validate(doc, KUBERNETES, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                unchecked.add((doc["apiVersion"], doc["kind"]))
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(map(str, exc.path))
                raise AssertionError(
                    f"{path}: {doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}"
                ) from None
    assert unchecked == NOT_SCHEMA_CHECKED


def test_a_broken_manifest_is_refused() -> None:
    """The check above can fail: a misspelt field and a wrong type are errors."""
    docs = build("overlays/prod")
    deployment = one(docs, "Deployment", "vinr-api")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
    hpa = one(docs, "HorizontalPodAutoscaler", "vinr-api")
    hpa["spec"]["minReplicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(hpa, KUBERNETES, strict=True)


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_every_role_is_probed_bounded_locked_down_and_budgeted(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = built[overlay]
    config = one(docs, "ConfigMap", "vinr-config")["data"]
    for role in ROLES:
        deployment = one(docs, "Deployment", f"vinr-{role}")
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == role
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        (container,) = spec["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        port = "http" if role == "api" else "metrics"
        if role != "api":
            assert ports[port] == int(config["VINR_METRICS_PORT"])
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
        locked = container["securityContext"]
        assert locked["readOnlyRootFilesystem"] is True
        assert locked["allowPrivilegeEscalation"] is False
        assert locked["capabilities"]["drop"] == ["ALL"]
        assert {"secretRef": {"name": "vinr-secrets"}} in container["envFrom"]
        budgets = [
            d
            for d in docs
            if d["kind"] == "PodDisruptionBudget"
            and selects(d["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(budgets) == 1, role
        assert selects(deployment["spec"]["selector"]["matchLabels"], labels)


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_each_role_has_a_servicemonitor_on_a_service_that_reaches_its_pods(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = built[overlay]
    for role in ROLES:
        monitor = one(docs, "ServiceMonitor", f"vinr-{role}")
        service = one(docs, "Service", f"vinr-{role}")
        assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        pod = one(docs, "Deployment", f"vinr-{role}")["spec"]["template"]
        assert selects(service["spec"]["selector"], pod["metadata"]["labels"])
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        (service_port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        container_ports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
        assert service_port["targetPort"] in container_ports


@pytest.mark.parametrize("overlay", ["overlays/dev", "overlays/prod"])
def test_aggregators_are_group_members_no_more_than_the_partitions(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    docs = built[overlay]
    topic = one(built["kafka"], "KafkaTopic", "vinr-usage")["spec"]
    config = one(docs, "ConfigMap", "vinr-config")["data"]
    assert topic["topicName"] == config["VINR_USAGE_TOPIC"]
    aggregator = one(docs, "Deployment", "vinr-aggregator")
    (container,) = aggregator["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["aggregator", "--group"]
    assert 2 <= aggregator["spec"]["replicas"] <= topic["partitions"]
    assert not [
        d
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
        and d["spec"]["scaleTargetRef"]["name"] == "vinr-aggregator"
    ]


def test_the_api_scales_on_cpu_within_documented_bounds(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    bounds = {}
    for overlay in ("overlays/dev", "overlays/prod"):
        docs = built[overlay]
        hpa = one(docs, "HorizontalPodAutoscaler", "vinr-api")["spec"]
        assert hpa["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "vinr-api",
        }
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"
        deployment = one(docs, "Deployment", "vinr-api")
        assert hpa["minReplicas"] == deployment["spec"]["replicas"] <= hpa["maxReplicas"]
        bounds[overlay] = (hpa["minReplicas"], hpa["maxReplicas"])
    assert bounds == {"overlays/dev": (1, 2), "overlays/prod": (3, 12)}
    notes = (DEPLOY / "README.md").read_text()
    assert "3 to 12" in notes and "1 to 2" in notes


def test_the_migration_job_and_secrets_hold_no_real_secret(
    built: dict[str, list[dict[str, Any]]],
) -> None:
    for overlay in ("overlays/dev", "overlays/prod"):
        docs = built[overlay]
        job = one(docs, "Job", "vinr-migrate")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["migrate"]
        assert job["metadata"]["labels"]["vinr/phase"] == "setup"
        secrets = [d for d in docs if d["kind"] == "Secret"]
        assert [s["metadata"]["name"] for s in secrets] == ["vinr-secrets"]
        values = secrets[0]["stringData"]
        assert set(values) == {"VINR_DATABASE_URL", "VINR_REDIS_URL"}
        assert all("REPLACE_WITH_PASSWORD" in v for v in values.values())
        for doc in docs:
            if doc["kind"] in {"Deployment", "Job"}:
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    assert "env" not in c, f"{doc['metadata']['name']}: settings come from envFrom"


def test_the_strimzi_example_matches_the_sizing(built: dict[str, list[dict[str, Any]]]) -> None:
    docs = built["kafka"]
    kafka = one(docs, "Kafka", "vinr")
    pool = one(docs, "KafkaNodePool", "dual-role")
    topic = one(docs, "KafkaTopic", "vinr-usage")
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    assert sorted(pool["spec"]["roles"]) == ["broker", "controller"]
    assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert topic["spec"]["partitions"] == 12
    assert topic["spec"]["replicas"] == 3 <= pool["spec"]["replicas"]
    assert int(topic["spec"]["config"]["min.insync.replicas"]) == 2
    assert all(d["metadata"]["namespace"] == "vinr" for d in docs)


def test_compose_runs_two_group_members_and_scrapes_both() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    members = [n for n, s in services.items() if s.get("command", [])[:1] == ["aggregator"]]
    assert sorted(members) == ["aggregator", "aggregator-2"]
    assert all(services[n]["command"] == ["aggregator", "--group"] for n in members)
    partitions = int(services["kafka"]["environment"]["KAFKA_NUM_PARTITIONS"])
    assert partitions >= 12 >= len(members)
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "vinr-aggregator"]
    assert sorted(job["dns_sd_configs"][0]["names"]) == sorted(members)
    assert scrape["rule_files"] == ["alerts.yml"]
    assert (
        "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in services["prometheus"]["volumes"]
    )
