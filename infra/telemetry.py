"""Structured logs and Prometheus metrics, shared by every role.

All metric objects live here so dashboards (``deploy/grafana``) have one list to follow.

No key, webhook secret or password is logged: nothing logs one on purpose (settings hold
DSNs as ``SecretStr``, connection errors name hosts, not URLs), and every line any logger
writes passes ``redact`` on its way out, so a library message or an exception text that
quotes one is masked too (defence in depth).
"""

from __future__ import annotations

import bisect
import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol

import orjson
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["M", "PoolMetrics", "UsageMetrics", "redact", "setup_logging"]

# What is masked in every log line: API keys (secret ``sk_…`` and restricted ``rk_…``, both
# modes), webhook signing secrets (``whsec_…``), the password of any URL
# (``scheme://user:password@host``) and ``password=…`` parameters (a DSN's query string).
_SECRETS = re.compile(
    r"\b(?P<kind>(?:sk|rk)_(?:test|live)_|whsec_)[A-Za-z0-9_\-]+"
    r"|(?P<userinfo>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)[^\s/]*@"
    r"|(?P<param>\b(?:password|passwd|pwd)=)[^\s&;,'\"]+",
    re.IGNORECASE,
)
_MASK = "[REDACTED]"


def _mask(match: re.Match[str]) -> str:
    if match["kind"] is not None:
        return match["kind"] + _MASK
    if match["userinfo"] is not None:
        return match["userinfo"] + _MASK + "@"
    return match["param"] + _MASK


def redact(text: str) -> str:
    """``text`` with every key, webhook secret and URL or DSN password masked."""
    return _SECRETS.sub(_mask, text)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(self._json(record))

    def _json(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "ctx", None)
        if isinstance(extra, dict):
            payload.update(extra)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


# Loggers held at WARNING even at DEBUG: aiokafka's protocol chatter; uvicorn's access log
# (off anyway); httpx and httpcore, which would log every webhook delivery's URL (a
# receiver's URL may carry its own token in the path or query) and, at DEBUG, the headers
# of each answer — the dispatcher logs and records each attempt itself.
_QUIET = ("aiokafka", "kafka", "uvicorn.access", "httpx", "httpcore")


def setup_logging(level: str = "INFO", json_logs: bool = False) -> None:
    """One stderr handler on the root logger, text or JSON lines, every line redacted.
    Python warnings and uncaught exceptions (main thread and others) go through it too, so
    they are redacted and, with JSON logs, stay JSON."""
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(_JsonFormatter())
    else:
        fmt = _TextFormatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s")
        fmt.converter = time.gmtime
        handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for quiet in _QUIET:
        logging.getLogger(quiet).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("vinr").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("vinr").critical(
        "uncaught exception in thread %s",
        name,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


class UsageMetrics:
    """The usage hot path's request count, records and latency, as plain numbers the API's
    event loop updates and the registry reads when scraped.

    prometheus_client's ``Counter.inc`` and ``Histogram.observe`` take a lock each and
    walk the buckets in Python — ~1.2 µs a request, 2% of a single-record request's whole
    cost. Here a request costs one ``bisect`` and three additions. Only one event loop
    writes (the scrape, on that loop or another thread, reads copies).

    Exported as ``vinr_ingest_requests_total{route,status}``,
    ``vinr_ingest_records_total`` and ``vinr_ingest_request_seconds{route}`` (histogram).
    """

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.records = 0
        self._counts: dict[str, list[int]] = {}  # per route: per bucket, then +Inf
        self._sums: dict[str, float] = {}

    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        counts = self._counts.get(route)
        if counts is None:
            counts = self._counts[route] = [0] * (len(self.BUCKETS) + 1)
            self._sums[route] = 0.0
        counts[bisect.bisect_left(self.BUCKETS, seconds)] += 1
        self._sums[route] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "vinr_ingest_requests", "Usage requests", labels=["route", "status"]
        )
        for (route, status), n in list(self.requests.items()):
            requests.add_metric([route, str(status)], n)
        yield requests
        yield CounterMetricFamily(
            "vinr_ingest_records", "Usage records accepted", value=self.records
        )
        latency = HistogramMetricFamily(
            "vinr_ingest_request_seconds", "Usage request latency", labels=["route"]
        )
        for route, counts in list(self._counts.items()):
            cumulative = 0
            buckets: list[tuple[str, float]] = []
            for bound, n in zip((*map(str, self.BUCKETS), "+Inf"), list(counts), strict=True):
                cumulative += n
                buckets.append((bound, cumulative))
            latency.add_metric([route], buckets, self._sums[route])
        yield latency


class _Pool(Protocol):
    def get_size(self) -> int: ...
    def get_idle_size(self) -> int: ...
    def get_max_size(self) -> int: ...
    def is_closing(self) -> bool: ...


class PoolMetrics:
    """Postgres connections of this process, read from its open pools when scraped.

    A pool exhausts silently (requests queue for a connection, then time out), so the
    saturation alert needs both figures: ``vinr_db_pool_connections_in_use`` and
    ``vinr_db_pool_connections_max``, summed over the process's open pools. A closed pool
    is forgotten at the next scrape or pool creation (asyncpg's pools take no weak
    reference).
    """

    def __init__(self) -> None:
        self._pools: list[_Pool] = []

    def track(self, pool: _Pool) -> None:
        self._pools = [p for p in self._pools if not p.is_closing()] + [pool]

    def collect(self) -> Iterator[Metric]:
        in_use = size_max = 0
        self._pools = [p for p in self._pools if not p.is_closing()]
        for pool in list(self._pools):
            in_use += pool.get_size() - pool.get_idle_size()
            size_max += pool.get_max_size()
        yield GaugeMetricFamily(
            "vinr_db_pool_connections_in_use",
            "Postgres connections acquired from this process's pools",
            value=in_use,
        )
        yield GaugeMetricFamily(
            "vinr_db_pool_connections_max",
            "Largest number of connections this process's pools may open",
            value=size_max,
        )


class M:
    """The metrics namespace (``M.aggregator_records.inc()``)."""

    usage = UsageMetrics()
    db_pools = PoolMetrics()
    ingest_rejected = Counter("vinr_ingest_rejected_total", "Rejected usage requests", ["reason"])
    ingest_inflight = Gauge("vinr_ingest_inflight", "Usage requests in flight")
    ingest_inflight_limit = Gauge(
        "vinr_ingest_inflight_limit",
        "Usage requests a process holds at once before answering 429 (max_inflight_requests)",
    )

    api_responses = Counter(
        "vinr_api_responses_total",
        "Responses of the control plane and the Dashboard (usage: vinr_ingest_requests_total)",
        ["plane", "status"],
    )

    rate_limited = Counter(
        "vinr_rate_limited_total", "Requests refused by their key's rate limit", ["plane"]
    )
    rate_limit_leases = Counter(
        "vinr_rate_limit_leases_total", "Token leases asked of Redis", ["plane"]
    )
    rate_limit_unchecked = Counter(
        "vinr_rate_limit_unchecked_total",
        "Requests admitted without a rate-limit check: Redis unreachable for a lease",
        ["plane"],
    )

    aggregator_records = Counter("vinr_aggregator_records_total", "Records folded into windows")
    aggregator_duplicates = Counter(
        "vinr_aggregator_duplicates_total", "Requests dropped as already in the ledger"
    )
    aggregator_batch_seconds = Histogram(
        "vinr_aggregator_batch_seconds", "Aggregator batch transaction time"
    )
    aggregator_lag = Gauge(
        "vinr_aggregator_lag",
        "Messages between the stored offset and the log end, per partition this member owns",
        ["partition"],
    )
    aggregator_assigned = Gauge(
        "vinr_aggregator_assigned_partitions",
        "1 while this aggregator owns the partition (group assignment or --partitions), else 0",
        ["partition"],
    )
    aggregator_dead_letters = Counter(
        "vinr_aggregator_dead_letters_total", "Requests sent to the dead-letter table", ["reason"]
    )
    aggregator_fenced = Counter(
        "vinr_aggregator_fenced_total", "Batches refused because the stored offset moved"
    )
    aggregator_meter_events = Counter(
        "vinr_aggregator_meter_events_total",
        "Meter events by outcome: counted, duplicate, after_cancel, or the rejection reason",
        ["outcome"],
    )
    aggregator_alerts_fired = Counter(
        "vinr_aggregator_alerts_fired_total", "Usage threshold alerts fired (once per customer)"
    )

    invoices = Counter("vinr_invoicer_invoices_total", "Invoices by status reached", ["status"])
    charges = Counter("vinr_invoicer_charges_total", "Charge attempts", ["outcome"])
    watermark_wait = Histogram(
        "vinr_invoicer_watermark_wait_seconds", "Time waiting for the aggregator to catch up"
    )
    watermark_missed = Counter(
        "vinr_invoicer_watermark_missed_total",
        "Watermark waits that ended before the aggregator reached the topic end",
    )
    invoicer_last_pass = Gauge(
        "vinr_invoicer_last_pass_timestamp_seconds",
        "Unix time the invoicer last finished a pass over everything due",
    )

    webhook_deliveries = Counter(
        "vinr_webhook_deliveries_total", "Webhook delivery attempts", ["outcome"]
    )
    webhook_seconds = Histogram("vinr_webhook_delivery_seconds", "Webhook delivery latency")
    webhook_pending = Gauge("vinr_webhook_pending", "Deliveries waiting")
    webhook_failing = Gauge("vinr_webhook_endpoints_failing", "Endpoints marked failing")
    webhook_oldest_due = Gauge(
        "vinr_webhook_oldest_due_seconds",
        "How long the most overdue pending delivery has been due (0 when none is)",
    )


REGISTRY.register(M.usage)
REGISTRY.register(M.db_pools)
