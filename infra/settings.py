"""Process settings, read once from ``VINR_*`` environment variables and passed down.

Defaults work on a developer machine with Postgres and Redis on 127.0.0.1. Secrets are
masked in ``repr`` so settings can be logged safely, and a refused configuration is
described by ``describe_errors``, which never repeats a secret setting's value.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "MAX_RATE_LIMIT",
    "METER_CACHE_STALE_S",
    "METER_EPOCH_POLL_S",
    "Settings",
    "describe_errors",
]

# The largest rate or burst a limit may have (settings, account overrides): keeps the
# token bucket's arithmetic in Redis exact (millionths of a token in a double).
MAX_RATE_LIMIT = 1_000_000_000
# How often each API process reads the meter epoch, and for how long after its latest
# successful read began the ingest still trusts its meter caches (the interval, and as
# long again for the read itself; past it the ingest reads the epoch before using them):
# the longest a meter event can be validated against a closing boundary that has moved.
METER_EPOCH_POLL_S = 0.25
METER_CACHE_STALE_S = 2 * METER_EPOCH_POLL_S


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VINR_", extra="forbid", frozen=True)

    database_url: SecretStr = SecretStr("postgresql://root@127.0.0.1:5432/vinr")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_prefix: str = "vinr:"
    # Unset means "no Kafka configured": `vinr up` and the tests start the dev broker.
    kafka_bootstrap: str | None = None
    usage_topic: str = "vinr.usage"
    consumer_group: str = "vinr-aggregator"
    # The ingest producer's idempotence (a broker retry never duplicates a message). Only a
    # broker without InitProducerId (tansu 0.6.0, the group tests' broker) needs false.
    kafka_idempotent: bool = True

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8080, ge=1, le=65535)
    # Workers (aggregator, invoicer, dispatcher) serve /healthz, /readyz, /metrics here.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    log_level: str = "INFO"
    log_json: bool = False

    idempotency_ttl_s: int = Field(default=86_400, ge=60)
    idempotency_lease_s: float = Field(default=10.0, gt=0)
    future_tolerance_s: int = Field(default=300, ge=0)
    late_grace_s: int = Field(default=300, ge=0)
    finalization_grace_s: int = Field(default=3_600, ge=0)
    publish_timeout_s: float = Field(default=5.0, gt=0)
    # Between marking a draft "closing" (ingest stops placing usage in its period) and pricing
    # it: must exceed publish_timeout_s, the longest a validated record can take to reach
    # Kafka, plus METER_CACHE_STALE_S, the longest ingest may validate a meter event against
    # a closing boundary it has not seen move yet.
    close_settle_s: float = Field(default=6.0, gt=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_inflight_requests: int = Field(default=4096, ge=1)
    # Per-key rate limits, requests/s and burst, per plane (domain.ratelimit); an account may
    # override each (`vinr account limits`). Usage: POST /v1/usage_records[/batch].
    control_rate_limit: int = Field(default=100, ge=1, le=MAX_RATE_LIMIT)
    control_rate_burst: int = Field(default=200, ge=1, le=MAX_RATE_LIMIT)
    usage_rate_limit: int = Field(default=20_000, ge=1, le=MAX_RATE_LIMIT)
    usage_rate_burst: int = Field(default=20_000, ge=1, le=MAX_RATE_LIMIT)

    aggregator_max_records: int = Field(default=20_000, ge=1)
    aggregator_poll_ms: int = Field(default=200, ge=1)
    # The longest the broker holds an aggregator's fetch when no new record is there: it
    # bounds how long a record that lands just after an empty fetch waits to be folded.
    aggregator_fetch_wait_ms: int = Field(default=50, ge=1, le=10_000)
    # Group mode (`vinr aggregator --group`): a member silent this long is declared dead
    # and its partitions move to the others (heartbeats every third of it).
    aggregator_session_timeout_ms: int = Field(default=10_000, ge=3_000)
    invoicer_poll_s: float = Field(default=1.0, gt=0)
    invoicer_batch: int = Field(default=500, ge=1)
    watermark_timeout_s: float = Field(default=30.0, gt=0)

    dunning_retry_days: tuple[int, ...] = (3, 5, 7, 6)
    dunning_final_action: str = "unpaid"

    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_max_age_s: int = Field(default=3 * 86_400, ge=60)
    webhook_concurrency: int = Field(default=32, ge=1)
    # How much of an endpoint's answer the dispatcher reads; the rest is not read.
    webhook_max_response_bytes: int = Field(default=64 * 1024, ge=0)
    dispatcher_poll_s: float = Field(default=0.5, gt=0)

    @field_validator("dunning_final_action")
    @classmethod
    def _check_final_action(cls, value: str) -> str:
        if value not in ("unpaid", "canceled"):
            raise ValueError(
                f"VINR_DUNNING_FINAL_ACTION must be 'unpaid' or 'canceled', got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _check_settle_outlasts_publish(self) -> Self:
        # Two-phase close: once a draft is marked closing, ingest places no new usage in its
        # period, but a record validated just before may still be on its way to Kafka for up
        # to publish_timeout_s. Pricing earlier could miss a record the client was told was
        # accepted.
        # Meter events are validated against cached closing boundaries, which lag a move
        # by up to METER_CACHE_STALE_S: the settle must outlast that lag too.
        if self.close_settle_s <= self.publish_timeout_s + METER_CACHE_STALE_S:
            raise ValueError(
                f"VINR_CLOSE_SETTLE_S ({self.close_settle_s}) must exceed VINR_PUBLISH_TIMEOUT_S"
                f" ({self.publish_timeout_s}) plus {METER_CACHE_STALE_S} s: the invoicer prices"
                " a closing period only after every record and meter event accepted for it has"
                " reached Kafka (a meter event may be validated against a closing boundary up to"
                f" {METER_CACHE_STALE_S} s old); set it above"
                f" {self.publish_timeout_s + METER_CACHE_STALE_S}"
            )
        return self

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"VINR_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
        return upper

    def key(self, *parts: str) -> str:
        """A Redis key in this deployment's namespace."""
        return self.redis_prefix + ":".join(parts)


def describe_errors(exc: ValidationError) -> str:
    """Why the configuration was refused, one setting per line (``VINR_API_PORT: …``).

    pydantic's own text quotes the input: for a rule over several settings, the whole
    input, DSNs and their passwords included. Here a value is quoted only for a known
    setting that is not secret (an unknown one may be a misspelt DSN), and only where the
    message does not already say it (the checks written here quote what they refuse)."""
    lines = []
    for error in exc.errors(include_url=False, include_context=False):
        loc = [str(part) for part in error["loc"]]
        name = f"VINR_{loc[0].upper()}" if loc else "settings"
        field = Settings.model_fields.get(loc[0]) if loc else None
        own_check = error["type"] == "value_error"
        shown = field is not None and field.annotation is not SecretStr and not own_check
        given = f" (got {error['input']!r})" if shown and "input" in error else ""
        lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}{given}")
    return "\n".join(lines)
