"""The ingest hot path: ``POST /v1/usage_records`` and ``POST /v1/usage_records/batch``.

Served as raw ASGI (no framework routing or dependency injection on the hot path). Per
request: one Redis script (idempotency begin + item metadata), one Kafka send awaited
until the broker acknowledged, one Redis script storing the response. The answer is sent
only after Kafka has the record; the idempotency key is marked done only then.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any, Literal

import asyncpg
import orjson
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from ingest.asgi import Receive, Scope, Send, header, read_body, send_error, send_json
from ingest.auth import Tenant
from ingest.idempotency import MAX_KEY_LENGTH, body_digest
from ingest.rules import Placement, check_item, place
from ingest.services import Services
from vinr.clock import now_s, subscription_now
from vinr.errors import (
    DependencyUnavailable,
    IdempotencyInFlight,
    IdempotencyMismatch,
    InvalidRequest,
    NotFound,
    VinrError,
)
from vinr.ids import derived_id, new_id
from vinr.itemmeta import ItemMeta, load_item_meta
from vinr.telemetry import M
from vinr.wire import UsageMessage, encode_usage, item_key

__all__ = ["MAX_BATCH", "UsageBatchIn", "UsageEndpoint", "UsageRecordIn", "validation_error"]

log = logging.getLogger(__name__)

MAX_QUANTITY = 2**53
MAX_BATCH = 1000
_MAX_TS = 2**40


class UsageRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subscriptionItem: str = Field(min_length=1, max_length=255)
    quantity: int = Field(ge=0, le=MAX_QUANTITY)
    timestamp: int | None = Field(default=None, ge=0, le=_MAX_TS)
    action: Literal["increment", "set"] = "increment"


class BatchRecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    quantity: int = Field(ge=0, le=MAX_QUANTITY)
    timestamp: int | None = Field(default=None, ge=0, le=_MAX_TS)
    action: Literal["increment", "set"] = "increment"


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subscriptionItem: str = Field(min_length=1, max_length=255)
    records: list[BatchRecordIn] = Field(min_length=1, max_length=MAX_BATCH)


def _param(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(errors: Sequence[Any]) -> InvalidRequest:
    """The first problem of a pydantic error list, named by its camelCase path
    (``records[3].quantity``); ``body``/``query``/``path`` location prefixes are dropped."""
    if not errors:
        return InvalidRequest("invalid request")
    first = errors[0]
    if first["type"] == "json_invalid":
        return InvalidRequest(f"request body is not valid JSON: {first['msg']}",
                              code="json_invalid")
    loc = tuple(p for p in first["loc"] if p not in ("body", "query", "path", "header"))
    param = _param(loc)
    if first["type"] == "extra_forbidden":
        return InvalidRequest(f"received unknown parameter: {param}", param=param,
                              code="parameter_unknown")
    if first["type"] == "missing":
        return InvalidRequest(f"missing required parameter: {param}", param=param,
                              code="parameter_missing")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return InvalidRequest(f"invalid {param or 'body'}: {first['msg']}{more}", param=param or None,
                          code="parameter_invalid")


def _record(rid: str, created: int, livemode: bool, item: str, qty: int, ts: int,
            is_set: bool) -> dict[str, Any]:
    return {"id": rid, "object": "usage_record", "created": created, "livemode": livemode,
            "subscriptionItem": item, "quantity": qty, "timestamp": ts,
            "action": "set" if is_set else "increment"}


class UsageEndpoint:
    """ASGI app for the two usage routes; ``services`` must be started before traffic."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._cfg = services.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch = scope["path"].endswith("/batch")
        route = "batch" if batch else "single"
        started = time.perf_counter()
        M.ingest_inflight.inc()
        status = 200
        try:
            body, replayed = await self._handle(scope, receive, batch)
            headers = [("Idempotent-Replayed", "true")] if replayed else []
            await send_json(send, 200, body, headers)
        except VinrError as exc:
            status = exc.status
            M.ingest_rejected.labels(exc.code).inc()
            await send_error(send, exc)
        finally:
            M.ingest_inflight.dec()
            M.ingest_requests.labels(route, str(status)).inc()
            M.ingest_seconds.labels(route).observe(time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, batch: bool) -> tuple[bytes, bool]:
        tenant = await self._s.auth.authenticate(header(scope, b"authorization"))
        body = await read_body(receive, self._cfg.max_body_bytes)
        try:
            request: UsageRecordIn | UsageBatchIn = (
                UsageBatchIn.model_validate_json(body) if batch
                else UsageRecordIn.model_validate_json(body))
        except ValidationError as exc:
            raise validation_error(exc.errors(include_url=False)) from None
        idem_key = header(scope, b"idempotency-key")
        if idem_key is not None and not 0 < len(idem_key) <= MAX_KEY_LENGTH:
            raise InvalidRequest(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters",
                                 param="Idempotency-Key")
        return await self._accept(tenant, request, body, idem_key)

    async def _accept(
        self, tenant: Tenant, request: UsageRecordIn | UsageBatchIn, body: bytes,
        idem_key: str | None,
    ) -> tuple[bytes, bool]:
        mode = "l" if tenant.livemode else "t"
        meta_key = self._s.meta.key(tenant.account_id, tenant.livemode, request.subscriptionItem)
        digest = body_digest(body)
        token = secrets.token_hex(8)
        redis_key: str | None = None
        try:
            raw_meta: bytes
            if idem_key is None:
                raw_meta = await self._s.redis.hget(meta_key, "d") or b""  # type: ignore[assignment]
            else:
                redis_key = self._cfg.key("idem", "usage", tenant.account_id, mode, idem_key)
                begun = await self._s.idempotency.begin(redis_key, digest, token, meta_key)
                if begun.state == "done":
                    return begun.stored, True
                if begun.state == "mismatch":
                    redis_key = None
                    raise IdempotencyMismatch(
                        "this Idempotency-Key was already used with a different request body;"
                        " use a new key for a new request", param="Idempotency-Key")
                if begun.state == "inflight":
                    redis_key = None
                    raise IdempotencyInFlight(
                        "a request with this Idempotency-Key is still being processed;"
                        " retry in a moment")
                raw_meta = begun.extra
            meta = await self._meta(tenant, request.subscriptionItem, raw_meta)
            response, message = self._build(tenant, request, meta, idem_key, digest)
            await self._publish(message)
        except (RedisError, OSError) as exc:
            await self._release(redis_key, digest, token)
            raise DependencyUnavailable("redis", str(exc)) from exc
        except BaseException:
            await self._release(redis_key, digest, token)
            raise
        M.ingest_records.inc(len(message.records))
        if redis_key is not None:
            try:
                await self._s.idempotency.complete(redis_key, digest, token, response)
            except (RedisError, OSError):
                # Kafka has the record: it is accepted. The key's lease runs out and a retry
                # republishes the same derived id, which the ledger drops.
                log.warning("could not store the idempotent response for %s", message.id)
        return response, False

    async def _release(self, redis_key: str | None, digest: str, token: str) -> None:
        if redis_key is None:
            return
        try:
            await self._s.idempotency.release(redis_key, digest, token)
        except (RedisError, OSError):
            log.warning("could not release idempotency key; its lease will expire")

    async def _meta(self, tenant: Tenant, item_id: str, raw: bytes) -> ItemMeta:
        if raw:
            meta = ItemMeta.loads(raw)
        else:
            try:
                loaded = await load_item_meta(self._s.pool, tenant.account_id, tenant.livemode,
                                              item_id)
            except (OSError, asyncpg.PostgresError) as exc:
                raise DependencyUnavailable("postgres", str(exc)) from exc
            if loaded is None:
                raise NotFound(f"no such subscription item: '{item_id}'",
                               param="subscriptionItem")
            await self._s.meta.put([loaded])
            meta = loaded
        check_item(meta)
        return meta

    def _build(
        self, tenant: Tenant, request: UsageRecordIn | UsageBatchIn, meta: ItemMeta,
        idem_key: str | None, digest: str,
    ) -> tuple[bytes, UsageMessage]:
        now = subscription_now(meta.frozen_time)
        created = now_s()
        mode = "l" if tenant.livemode else "t"
        request_id = (new_id("mbu") if idem_key is None
                      else derived_id("mbu", tenant.account_id, mode, idem_key, digest))
        if isinstance(request, UsageBatchIn):
            recs = [(r.timestamp if r.timestamp is not None else now, r.quantity,
                     r.action == "set") for r in request.records]
            params = [f"records[{i}].timestamp" for i in range(len(recs))]
        else:
            ts = request.timestamp if request.timestamp is not None else now
            recs = [(ts, request.quantity, request.action == "set")]
            params = ["timestamp"]
        spot: Placement = place(
            meta, [r[0] for r in recs], now, future_tolerance_s=self._cfg.future_tolerance_s,
            late_grace_s=self._cfg.late_grace_s, params=params)
        message = UsageMessage(
            id=request_id, account_id=tenant.account_id, livemode=tenant.livemode,
            item_pk=meta.pk, period_start=spot.period_start, period_end=spot.period_end,
            accepted_at=created, records=recs)
        item = request.subscriptionItem
        if isinstance(request, UsageBatchIn):
            data = [_record(derived_id("mbu", request_id, str(i)), created, tenant.livemode,
                            item, q, ts, s) for i, (ts, q, s) in enumerate(recs)]
            payload: dict[str, Any] = {
                "id": request_id, "object": "usage_record_batch", "created": created,
                "livemode": tenant.livemode, "subscriptionItem": item, "count": len(data),
                "data": data}
        else:
            ts, q, s = recs[0]
            payload = _record(request_id, created, tenant.livemode, item, q, ts, s)
        return orjson.dumps(payload), message

    async def _publish(self, message: UsageMessage) -> None:
        try:
            await self._s.producer.send_and_wait(
                self._cfg.usage_topic, encode_usage(message), key=item_key(message.item_pk))
        except (KafkaError, TimeoutError) as exc:
            raise DependencyUnavailable("kafka", str(exc)) from exc
