"""Structured logs and Prometheus metrics, shared by every role.

All metric objects live here so dashboards (``deploy/grafana``) have one list to follow.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import Counter, Gauge, Histogram

__all__ = ["M", "setup_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname,
            "logger": record.name, "msg": record.getMessage(),
        }
        extra = getattr(record, "ctx", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


def setup_logging(level: str = "INFO", json_logs: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(_JsonFormatter())
    else:
        fmt = logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s")
        fmt.converter = time.gmtime
        handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class M:
    """The metrics namespace (``M.ingest_records.inc()``)."""

    ingest_requests = Counter("vinr_ingest_requests_total", "Usage requests", ["route", "status"])
    ingest_records = Counter("vinr_ingest_records_total", "Usage records accepted")
    ingest_seconds = Histogram(
        "vinr_ingest_request_seconds", "Usage request latency", ["route"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    )
    ingest_rejected = Counter("vinr_ingest_rejected_total", "Rejected usage requests", ["reason"])
    ingest_inflight = Gauge("vinr_ingest_inflight", "Usage requests in flight")

    aggregator_records = Counter("vinr_aggregator_records_total", "Records folded into windows")
    aggregator_duplicates = Counter(
        "vinr_aggregator_duplicates_total", "Requests dropped as already in the ledger")
    aggregator_batch_seconds = Histogram(
        "vinr_aggregator_batch_seconds", "Aggregator batch transaction time")
    aggregator_lag = Gauge("vinr_aggregator_lag", "Messages behind the log end", ["partition"])
    aggregator_dead_letters = Counter(
        "vinr_aggregator_dead_letters_total", "Requests sent to the dead-letter table", ["reason"])
    aggregator_fenced = Counter(
        "vinr_aggregator_fenced_total", "Batches refused because the stored offset moved")

    invoices = Counter("vinr_invoicer_invoices_total", "Invoices by status reached", ["status"])
    charges = Counter("vinr_invoicer_charges_total", "Charge attempts", ["outcome"])
    watermark_wait = Histogram(
        "vinr_invoicer_watermark_wait_seconds", "Time waiting for the aggregator to catch up")

    webhook_deliveries = Counter(
        "vinr_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"])
    webhook_seconds = Histogram("vinr_webhook_delivery_seconds", "Webhook delivery latency")
    webhook_pending = Gauge("vinr_webhook_pending", "Deliveries waiting")
    webhook_failing = Gauge("vinr_webhook_endpoints_failing", "Endpoints marked failing")
