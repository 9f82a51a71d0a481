"""The usage hot path's lock-free metrics, as Prometheus reads them."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from infra.telemetry import UsageMetrics


def _registry(metrics: UsageMetrics) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(metrics)
    return registry


def test_requests_records_and_latency_are_exported() -> None:
    metrics = UsageMetrics()
    registry = _registry(metrics)
    for seconds in (0.0004, 0.001, 0.003, 0.003, 7.0):  # 0.001 sits on a bound: le
        metrics.request("single", 200, seconds)
    metrics.request("single", 400, 0.0002)
    metrics.request("batch", 200, 0.02)
    metrics.records += 1004

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("vinr_ingest_requests_total", route="single", status="200") == 5
    assert value("vinr_ingest_requests_total", route="single", status="400") == 1
    assert value("vinr_ingest_requests_total", route="batch", status="200") == 1
    assert value("vinr_ingest_records_total") == 1004
    single = {
        le: value("vinr_ingest_request_seconds_bucket", route="single", le=le)
        for le in ("0.001", "0.0025", "0.005", "2.5", "+Inf")
    }
    assert single == {"0.001": 3, "0.0025": 3, "0.005": 5, "2.5": 5, "+Inf": 6}
    assert value("vinr_ingest_request_seconds_count", route="single") == 6
    assert value("vinr_ingest_request_seconds_sum", route="single") == sum(
        (0.0004, 0.001, 0.003, 0.003, 7.0, 0.0002)
    )
    assert value("vinr_ingest_request_seconds_bucket", route="batch", le="0.01") == 0
    assert value("vinr_ingest_request_seconds_bucket", route="batch", le="0.025") == 1


@given(st.lists(st.floats(min_value=0, max_value=10, allow_nan=False), min_size=1))
def test_buckets_count_what_is_at_or_below_each_bound(latencies: list[float]) -> None:
    metrics = UsageMetrics()
    registry = _registry(metrics)
    for seconds in latencies:
        metrics.request("single", 200, seconds)
    for bound in UsageMetrics.BUCKETS:
        assert registry.get_sample_value(
            "vinr_ingest_request_seconds_bucket", {"route": "single", "le": str(bound)}
        ) == sum(1 for s in latencies if s <= bound)
    assert registry.get_sample_value(
        "vinr_ingest_request_seconds_bucket", {"route": "single", "le": "+Inf"}
    ) == len(latencies)
