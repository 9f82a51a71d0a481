"""The ingest hot path: ``POST /v1/usage_records`` and ``POST /v1/usage_records/batch``.

Served as raw ASGI (no framework routing or dependency injection on the hot path). Per
request: one *claim* in Redis (idempotency key → pending, per-record keys, item metadata
read alongside), one Kafka publish awaited until the broker acknowledged it (single
records accepted together share one message per partition: ``ingest.publisher``), one *settle* in
Redis (key → done, queued before the answer is written and not waited for). Claims and
settles of concurrent requests share one Lua call per event-loop iteration
(``domain.idempotency.store``). The answer is sent only after Kafka has the record and
the key is marked done only then, so a failed publish leaves the key retryable — never
"seen but lost". Postgres is read only on a cache miss (item metadata, API keys, an
account's rate limits) and around period boundaries (``ingest.items``, ``ingest.rules``).

This module is the endpoint: it drives a request through ``ingest.parse`` (the body),
the idempotency claim, ``ingest.rules`` (where its records land), the publish and
``ingest.results`` (the answer and what its key keeps).

Failure handling, in order of the request:

- missing, unknown, revoked or expired key → 401; a restricted key whose permissions do
  not allow the route → 403 (``domain.permissions``); nothing read, claimed or released;
- the key over its usage rate limit → 429 ``rate_limit_error`` with ``Retry-After``, before
  the body is read (``domain.ratelimit``: admitted from tokens leased to this process, no
  Redis call per request);
- bad body, unknown item, timestamp outside the rules → 4xx, nothing claimed or released;
- a value Postgres refuses (``asyncpg.DataError``) → 400, like a bad body: retrying it
  cannot succeed, so it neither answers 503 nor holds off the requests that follow;
- Redis, Kafka or Postgres unavailable → 503 + ``Retry-After``; whatever was claimed is
  released (or expires with its lease when even that fails), nothing is answered 200;
- more than ``max_inflight_requests`` requests in the process → 429 + ``Retry-After``
  (code ``too_many_requests_in_flight``: the process's bound, not the key's limit).

A 503 after the publish was attempted is ambiguous (the broker may have the message): the
retry with the same key carries the same derived ``mbu_`` id, which the aggregator's
ledger drops if it already has it — so retrying is always safe.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from redis.exceptions import RedisError

from domain.clock import now_s, subscription_now
from domain.idempotency import (
    Claim,
    ClaimState,
    RecordKey,
    RecordState,
    body_digest,
    check_idempotency_key,
)
from domain.permissions import check as check_permission
from domain.services import Services
from domain.tenant import Tenant
from domain.wire import Entry, item_key, usage_entry
from infra.asgi import Receive, Scope, Send, read_body, send_error, send_json
from infra.errors import DependencyUnavailable, RateLimited, VinrError, refused_value
from infra.ids import derived_id, new_id
from infra.telemetry import M
from infra.validation import combined_error
from ingest.items import ItemLookup
from ingest.parse import Request, parse_batch, parse_single, refusal
from ingest.publisher import Records, UsagePublisher
from ingest.results import answer_repeat, dump_stored, render
from ingest.rules import check_item, needs_schedule, place_each

__all__ = ["UsageEndpoint"]

log = logging.getLogger(__name__)

_SINGLE_PARAMS = ["timestamp"]  # place_each's name for a single record's timestamp
_KAFKA_BACKOFF_S = 1.0  # after a failed publish, answer 503 at once for this long
_RECORD_DIGEST_BYTES = 8  # a per-record key's digest: 16 hex characters
# Enum members looked up once: an enum class attribute costs ~80 ns a read on 3.11.
_NEW, _RECORD_NEW, _RECORD_DONE = ClaimState.NEW, RecordState.NEW, RecordState.DONE
_INTERNAL = orjson.dumps(
    {
        "error": {
            "type": "api_error",
            "code": "internal_error",
            "param": None,
            "message": "an internal error occurred; retrying with the same Idempotency-Key is safe",
        }
    }
)


class _Rejections:
    """Pre-resolved counter children: ``labels()`` per request costs more than the work."""

    def __init__(self) -> None:
        self._rejected: dict[str, Any] = {}

    def rejected(self, code: str) -> None:
        child = self._rejected.get(code)
        if child is None:
            child = self._rejected[code] = M.ingest_rejected.labels(code)
        child.inc()


class UsageEndpoint:
    """ASGI app for the two usage routes; ``services`` must be started before traffic."""

    def __init__(self, services: Services) -> None:
        self._s = services
        self._cfg = services.settings
        self._inflight = 0
        self._max_inflight = services.settings.max_inflight_requests
        self._rejections = _Rejections()
        self._limiter = services.limiter.usage
        self._admit = self._limiter.take  # bound once: the hot path's one call for the limit
        items = ItemLookup(services)
        # bound once: the per-request calls cost what they did as methods of the endpoint
        self._meta, self._fresh_meta, self._calendar = items.meta, items.fresh, items.calendar
        self._kafka_down_until = 0.0
        self._publisher = UsagePublisher(
            lambda: services.producer, self._cfg.usage_topic, timeout_s=self._cfg.publish_timeout_s
        )
        # Lease tokens: unique per request (a random process prefix and a counter) — they
        # only tell this request's pending keys from another's; no secret, no syscall.
        self._token_prefix = secrets.token_hex(6)
        self._tokens = itertools.count()
        M.ingest_inflight.set_function(lambda: self._inflight)
        M.ingest_inflight_limit.set(self._max_inflight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        batch = scope["path"].endswith("/batch")
        route = "batch" if batch else "single"
        started = time.perf_counter()
        status = 200
        if self._inflight >= self._max_inflight:
            exc: VinrError = RateLimited(
                f"this API process is at its limit of {self._max_inflight} requests in"
                " flight; retry shortly",
                code="too_many_requests_in_flight",
            )
            self._rejections.rejected(exc.code)
            M.usage.request(route, exc.status, time.perf_counter() - started)
            await send_error(send, exc)
            return
        self._inflight += 1
        try:
            body, replayed = await self._handle(scope, receive, batch)
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ]
            if replayed:
                headers.append((b"idempotent-replayed", b"true"))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except VinrError as exc:
            status = exc.status
            self._rejections.rejected(exc.code)
            await send_error(send, exc)
        except Exception:
            # A bug, not bad input: logged with its traceback, answered in the API's shape.
            log.exception("usage request failed")
            status = 500
            await send_json(send, 500, _INTERNAL)
        finally:
            self._inflight -= 1
            M.usage.request(route, status, time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive, batch: bool) -> tuple[bytes, bool]:
        authorization = idem_key = None
        for name, value in scope["headers"]:  # both headers in one pass
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"idempotency-key" and idem_key is None:
                idem_key = value.decode("latin-1")
        auth = self._s.auth
        tenant = auth.cached(authorization)
        if tenant is None:
            try:
                tenant = await auth.authenticate(authorization)
            except asyncpg.DataError as exc:
                raise refused_value(exc) from exc
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise DependencyUnavailable("postgres", str(exc)) from exc
        if tenant.restricted:
            check_permission(tenant, "POST", scope["path"])
        if not self._admit(tenant.key_id):
            await self._limiter.acquire(tenant)
        message = await receive()
        body = message.get("body", b"")
        if (
            message["type"] != "http.request"
            or message.get("more_body", False)
            or len(body) > self._cfg.max_body_bytes
        ):
            body = await read_body(receive, self._cfg.max_body_bytes, message)
        try:
            req = parse_batch(body) if batch else parse_single(body)
        except ValidationError as exc:
            raise refusal(exc, batch) from None
        if idem_key is not None:
            check_idempotency_key(idem_key)
        return await self._accept(tenant, req, idem_key)

    async def _accept(
        self, tenant: Tenant, req: Request, idem_key: str | None
    ) -> tuple[bytes, bool]:
        s, cfg = self._s, self._cfg
        if time.monotonic() < self._kafka_down_until:
            raise DependencyUnavailable("kafka", "recent publish failures")
        _ = s.producer  # 503 now, before claiming anything, if not connected
        mode = "l" if tenant.livemode else "t"
        digest = body_digest(req.canonical())
        token = f"{self._token_prefix}{next(self._tokens):x}"
        request_key = (
            cfg.key("idem", "usage", tenant.account_id, mode, idem_key)
            if idem_key is not None
            else None
        )
        record_keys = (
            [
                RecordKey(
                    cfg.key("idem", "rec", tenant.account_id, mode, req.item, key),
                    body_digest(f"{q}|{ts}|{st}".encode(), _RECORD_DIGEST_BYTES),
                )
                for key, q, ts, st in zip(
                    req.record_keys, req.quantities, req.timestamps, req.sets, strict=True
                )
                if key is not None
            ]
            if req.batch
            else []
        )
        store = s.idempotency
        meta_key = s.meta.key(tenant.account_id, tenant.livemode, req.item)
        try:
            claim = await store.claim(meta_key, request_key, digest, token, record_keys)
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", str(exc)) from exc
        if claim.state is not _NEW:
            return answer_repeat(claim, req, tenant.livemode), True
        claimed = (
            [
                rk
                for rk, state in zip(record_keys, claim.records, strict=True)
                if state == _RECORD_NEW
            ]
            if record_keys
            else record_keys
        )
        try:
            response, (entry, batched, key, count), record_ids = await self._build(
                tenant, req, claim, idem_key, digest
            )
            if count:
                # Until the broker acked, within publish_timeout_s: the invoicer's settle
                # time (close_settle_s) relies on this deadline (ingest.publisher).
                try:
                    await self._publisher.publish(key, entry, batched)
                except (KafkaError, TimeoutError) as exc:
                    self._kafka_down_until = time.monotonic() + _KAFKA_BACKOFF_S
                    raise DependencyUnavailable("kafka", str(exc) or type(exc).__name__) from exc
        except BaseException:
            await self._release(request_key, digest, token, claimed)
            raise
        M.usage.records += count
        self._complete(
            request_key,
            digest,
            token,
            response[1],
            list(zip(claimed, record_ids, strict=True)) if claimed else [],
        )
        return response[0], False

    async def _release(
        self, request_key: str | None, digest: str, token: str, records: Sequence[RecordKey]
    ) -> None:
        """Free what a failed request claimed, before it is answered: the client's retry
        must find the key free, not pending."""
        if request_key is None and not records:
            return
        try:
            await self._s.idempotency.release_claim(request_key, digest, token, records)
        except (RedisError, OSError):
            log.warning("could not release idempotency keys; their lease will expire")

    def _complete(
        self,
        request_key: str | None,
        digest: str,
        token: str,
        stored: bytes,
        records: Sequence[tuple[RecordKey, str]],
    ) -> None:
        """Mark the keys done, without waiting: Kafka has the record, it is accepted. The
        settlement is queued before the answer is written, ahead of any claim a retry could
        make; if it fails, the keys stay pending until their lease runs out and a retry then
        republishes the same derived id, which the ledger drops."""
        if request_key is None and not records:
            return
        self._s.idempotency.complete_claim(
            request_key, digest, token, stored=stored, records=records
        )

    async def _build(
        self, tenant: Tenant, req: Request, claim: Claim, idem_key: str | None, digest: str
    ) -> tuple[tuple[bytes, bytes], tuple[Entry, Records | None, bytes, int], list[str]]:
        """((response, stored), (the request's entry in a Kafka message, its records when
        they follow the entry, the item key, the record count), ids of the claimed keyed
        records).

        Raises InvalidRequest/NotFound for records the rules refuse (naming every bad
        index), DependencyUnavailable when Postgres is needed and down.
        """
        meta = await self._meta(tenant, req.item, claim.meta)
        check_item(meta)
        now = subscription_now(meta.frozen_time)
        timestamps = [now if ts is None else ts for ts in req.timestamps]
        schedule = None
        if needs_schedule(meta, timestamps, now):
            meta, schedule = await self._fresh_meta(tenant, meta)
            check_item(meta)
        params = (
            [f"records[{i}].timestamp" for i in range(len(timestamps))]
            if req.batch
            else _SINGLE_PARAMS
        )
        spot, errors = place_each(
            meta,
            self._calendar(meta, now, schedule),
            timestamps,
            now,
            future_tolerance_s=self._cfg.future_tolerance_s,
            late_grace_s=self._cfg.late_grace_s,
            params=params,
        )
        if errors or spot is None:
            raise combined_error([(e.param or "", e.code, e.message) for e in errors])
        created = now_s()
        mode = "l" if tenant.livemode else "t"
        request_id = (
            new_id("mbu")
            if idem_key is None
            else derived_id("mbu", tenant.account_id, mode, idem_key, digest)
        )
        duplicates: dict[int, str] = {}
        record_ids: list[str] = []
        keyed = 0
        for i, key in enumerate(req.record_keys if req.batch else ()):
            if key is None:
                continue
            state = claim.records[keyed]
            keyed += 1
            if state.startswith(_RECORD_DONE):
                duplicates[i] = state[1:]
            else:
                record_ids.append(f"{request_id}_{i}")
        records = (
            [
                (ts, q, s)
                for i, (ts, q, s) in enumerate(
                    zip(timestamps, req.quantities, req.sets, strict=True)
                )
                if i not in duplicates
            ]
            if duplicates
            else list(zip(timestamps, req.quantities, req.sets, strict=True))
        )
        entry, batched = usage_entry(
            request_id,
            tenant.account_id,
            tenant.livemode,
            meta.pk,
            spot.period_start,
            spot.period_end,
            created,
            records,
        )
        response = render(req, tenant.livemode, request_id, created, now, duplicates)
        return (
            (response, dump_stored(request_id, created, now, duplicates)),
            (entry, batched, item_key(meta.pk), len(records)),
            record_ids,
        )
