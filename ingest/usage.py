"""The ingest hot path: ``POST /v1/usage_records`` and ``POST /v1/usage_records/batch``.

Served as raw ASGI (no framework routing or dependency injection on the hot path). Per
request: one *claim* in Redis (idempotency key → pending, per-record keys, item metadata
read alongside), one Kafka publish awaited until the broker acknowledged it (single
records accepted together share one message per partition: ``ingest.publisher``), one *settle* in
Redis (key → done, queued before the answer is written and not waited for). Claims and
settles of concurrent requests share one Lua call per event-loop iteration
(``domain.idempotency.Coalescer``). The answer is sent only after Kafka has the record and
the key is marked done only then, so a failed publish leaves the key retryable — never
"seen but lost". Postgres is read only on a cache miss (item metadata, API keys) and
around period boundaries (``ingest.rules``).

Failure handling, in order of the request:

- bad body, unknown item, timestamp outside the rules → 4xx, nothing claimed or released;
- Redis, Kafka or Postgres unavailable → 503 + ``Retry-After``; whatever was claimed is
  released (or expires with its lease when even that fails), nothing is answered 200;
- more than ``max_inflight_requests`` requests in the process → 429 + ``Retry-After``.

A 503 after the publish was attempted is ambiguous (the broker may have the message): the
retry with the same key carries the same derived ``mbu_`` id, which the aggregator's
ledger drops if it already has it — so retrying is always safe.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import orjson
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.exceptions import RedisError

from domain.accounts import Tenant
from domain.clock import now_s, subscription_now
from domain.idempotency import MAX_KEY_LENGTH, Claim, RecordKey
from domain.itemmeta import ItemMeta, load_item_meta
from domain.services import Services
from domain.wire import Entry, item_key, usage_entry
from infra.asgi import Receive, Scope, Send, read_body, send_error, send_json
from infra.errors import (
    DependencyUnavailable,
    IdempotencyInFlight,
    IdempotencyMismatch,
    InvalidRequest,
    NotFound,
    RateLimited,
    VinrError,
)
from infra.ids import derived_id, new_id
from infra.telemetry import M
from infra.validation import combined_error, problem, validation_error
from ingest.publisher import Records, UsagePublisher
from ingest.rules import (
    Calendar,
    Schedule,
    calendar,
    check_item,
    needs_schedule,
    place_each,
)

__all__ = ["MAX_BATCH", "UsageBatchIn", "UsageEndpoint", "UsageRecordIn"]

log = logging.getLogger(__name__)

MAX_QUANTITY = 2**53
MAX_BATCH = 1000
_MAX_TS = 2**40
_SINGLE_PARAMS = ["timestamp"]  # place_each's name for a single record's timestamp
_KAFKA_BACKOFF_S = 1.0  # after a failed publish, answer 503 at once for this long
_FRESH_META_S = 1.0  # how long a Postgres re-read of a rolled-over item is reused
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
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=MAX_KEY_LENGTH)


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    subscriptionItem: str = Field(min_length=1, max_length=255)
    records: list[BatchRecordIn] = Field(min_length=1, max_length=MAX_BATCH)


def _batch_validation_error(exc: ValidationError) -> InvalidRequest:
    errors = exc.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return validation_error(errors)
    return combined_error([problem(e) for e in errors])


@dataclass(slots=True)
class _Request:
    """A usage request, normalised: one record is a batch of one."""

    batch: bool
    item: str
    quantities: list[int]
    timestamps: list[int | None]
    sets: list[bool]
    record_keys: list[str | None]

    def canonical(self) -> bytes:
        """The request's meaning, independent of JSON spelling (key order, spaces,
        defaults written out or not): what the idempotency digest covers."""
        return orjson.dumps(
            [self.batch, self.item, self.quantities, self.timestamps, self.sets, self.record_keys]
        )


def _from_single(r: UsageRecordIn) -> _Request:
    return _Request(
        False, r.subscriptionItem, [r.quantity], [r.timestamp], [r.action == "set"], [None]
    )


_SINGLE_FIELDS = frozenset(("subscriptionItem", "quantity", "timestamp", "action"))
_ACTIONS = {"increment": False, "set": True}


def _parse_single(body: bytes) -> _Request:
    """The single-record body: a lean check of the well-formed case, pydantic for anything
    else (so every refusal keeps ``UsageRecordIn``'s exact errors). Accepts exactly what
    ``UsageRecordIn`` accepts: strict types (no bools or floats for integers), the same
    bounds and no unknown fields."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        d = None
    if type(d) is dict and d.keys() <= _SINGLE_FIELDS:
        item = d.get("subscriptionItem")
        q = d.get("quantity")
        ts = d.get("timestamp")
        action = d.get("action", "increment")
        is_set = _ACTIONS.get(action) if type(action) is str else None
        if (
            type(item) is str
            and 0 < len(item) <= 255
            and type(q) is int
            and 0 <= q <= MAX_QUANTITY
            and (ts is None or (type(ts) is int and 0 <= ts <= _MAX_TS))
            and is_set is not None
        ):
            return _Request(False, item, [q], [ts], [is_set], [None])
    return _from_single(UsageRecordIn.model_validate_json(body))


def _from_batch(b: UsageBatchIn) -> _Request:
    recs = b.records
    keys = [r.idempotencyKey for r in recs]
    seen: dict[str, int] = {}
    problems: list[tuple[str, str, str]] = []
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in seen:
            param = f"records[{i}].idempotencyKey"
            problems.append(
                (param, "parameter_invalid", f"{param} repeats records[{seen[key]}].idempotencyKey")
            )
        else:
            seen[key] = i
    if problems:
        raise combined_error(problems)
    return _Request(
        True,
        b.subscriptionItem,
        [r.quantity for r in recs],
        [r.timestamp for r in recs],
        [r.action == "set" for r in recs],
        keys,
    )


def _digest(raw: bytes, size: int = 16) -> str:
    return hashlib.blake2b(raw, digest_size=size).hexdigest()


class _Stored:
    """What the idempotency key keeps once done; the response is rebuilt from it and the
    (identical) retried request, so a batch of 1000 costs Redis ~100 bytes, not 150 KB."""

    @staticmethod
    def dumps(request_id: str, created: int, now: int, duplicates: dict[int, str]) -> bytes:
        return orjson.dumps([request_id, created, now, duplicates], option=orjson.OPT_NON_STR_KEYS)

    @staticmethod
    def loads(raw: bytes) -> tuple[str, int, int, dict[int, str]]:
        request_id, created, now, dups = orjson.loads(raw)
        return request_id, created, now, {int(k): v for k, v in dups.items()}


def _render(
    req: _Request,
    livemode: bool,
    request_id: str,
    created: int,
    now: int,
    duplicates: dict[int, str],
) -> bytes:
    action = ("increment", "set")
    if not req.batch:
        ts = req.timestamps[0]
        return orjson.dumps(
            {
                "id": request_id,
                "object": "usage_record",
                "created": created,
                "livemode": livemode,
                "subscriptionItem": req.item,
                "quantity": req.quantities[0],
                "timestamp": now if ts is None else ts,
                "action": action[req.sets[0]],
            }
        )
    item = req.item
    data = [
        {
            "id": duplicates.get(i) or f"{request_id}_{i}",
            "object": "usage_record",
            "created": created,
            "livemode": livemode,
            "subscriptionItem": item,
            "quantity": q,
            "timestamp": now if ts is None else ts,
            "action": action[s],
            "duplicate": i in duplicates,
        }
        for i, (q, ts, s) in enumerate(zip(req.quantities, req.timestamps, req.sets, strict=True))
    ]
    return orjson.dumps(
        {
            "id": request_id,
            "object": "usage_record_batch",
            "created": created,
            "livemode": livemode,
            "subscriptionItem": item,
            "count": len(data),
            "duplicates": len(duplicates),
            "data": data,
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
        self._meta_cache: dict[bytes, ItemMeta] = {}
        # cached_calendar(meta) by id(meta); the entry keeps meta alive, so the id is its own
        self._calendars: dict[int, tuple[ItemMeta, Calendar]] = {}
        self._fresh: dict[tuple[str, bool, str], tuple[float, ItemMeta, Schedule]] = {}
        self._kafka_down_until = 0.0
        self._publisher = UsagePublisher(
            lambda: services.producer, self._cfg.usage_topic, timeout_s=self._cfg.publish_timeout_s
        )
        # Lease tokens: unique per request (a random process prefix and a counter) — they
        # only tell this request's pending keys from another's; no secret, no syscall.
        self._token_prefix = secrets.token_hex(6)
        self._tokens = itertools.count()
        M.ingest_inflight.set_function(lambda: self._inflight)

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
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise DependencyUnavailable("postgres", str(exc)) from exc
        message = await receive()
        body = message.get("body", b"")
        if (
            message["type"] != "http.request"
            or message.get("more_body", False)
            or len(body) > self._cfg.max_body_bytes
        ):
            body = await read_body(receive, self._cfg.max_body_bytes, message)
        try:
            req = (
                _from_batch(UsageBatchIn.model_validate_json(body))
                if batch
                else _parse_single(body)
            )
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise (_batch_validation_error(exc) if batch else validation_error(errors)) from None
        if idem_key is not None and not 0 < len(idem_key) <= MAX_KEY_LENGTH:
            raise InvalidRequest(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", param="Idempotency-Key"
            )
        return await self._accept(tenant, req, idem_key)

    async def _accept(
        self, tenant: Tenant, req: _Request, idem_key: str | None
    ) -> tuple[bytes, bool]:
        s, cfg = self._s, self._cfg
        if time.monotonic() < self._kafka_down_until:
            raise DependencyUnavailable("kafka", "recent publish failures")
        _ = s.producer  # 503 now, before claiming anything, if not connected
        mode = "l" if tenant.livemode else "t"
        digest = _digest(req.canonical())
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
                    _digest(f"{q}|{ts}|{st}".encode(), 8),
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
        if claim.state != "new":
            return self._refuse_or_replay(claim, req, tenant)
        claimed = (
            [rk for rk, state in zip(record_keys, claim.records, strict=True) if state == "n"]
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

    def _refuse_or_replay(self, claim: Claim, req: _Request, tenant: Tenant) -> tuple[bytes, bool]:
        if claim.state == "done":
            request_id, created, now, dups = _Stored.loads(claim.stored)
            return _render(req, tenant.livemode, request_id, created, now, dups), True
        if claim.state == "mismatch":
            raise IdempotencyMismatch(
                "this Idempotency-Key was already used with a different request body;"
                " use a new key for a new request",
                param="Idempotency-Key",
            )
        if claim.state == "inflight":
            raise IdempotencyInFlight(
                "a request with this Idempotency-Key is still being processed; retry in a moment"
            )
        keyed = [i for i, k in enumerate(req.record_keys) if k is not None]
        other = [
            f"records[{keyed[j]}].idempotencyKey" for j, st in enumerate(claim.records) if st == "m"
        ]
        if other:
            raise IdempotencyMismatch(
                f"per-record idempotency keys already used with a different record: "
                f"{', '.join(other)}; nothing was recorded",
                param=other[0],
            )
        pending = [
            f"records[{keyed[j]}].idempotencyKey" for j, st in enumerate(claim.records) if st == "p"
        ]
        raise IdempotencyInFlight(
            f"records with these idempotency keys are still being processed by another"
            f" request: {', '.join(pending)}; retry in a moment",
            param=pending[0] if pending else None,
        )

    async def _release(
        self, request_key: str | None, digest: str, token: str, records: Sequence[RecordKey]
    ) -> None:
        """Free what a failed request claimed, before it is answered: the client's retry
        must find the key free, not pending."""
        if request_key is None and not records:
            return
        try:
            await self._s.idempotency.settle(
                request_key, digest, token, ok=False, records=[(r, "-") for r in records]
            )
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
        self._s.idempotency.settle_detached(
            request_key, digest, token, stored=stored, records=records
        )

    async def _meta(self, tenant: Tenant, item_id: str, raw: bytes) -> ItemMeta:
        if raw:
            meta = self._meta_cache.get(raw)
            if meta is None:
                if len(self._meta_cache) > 10_000:
                    self._meta_cache.clear()
                meta = self._meta_cache[raw] = ItemMeta.loads(raw)
            return meta
        loaded = await self._load_meta(tenant, item_id)
        try:
            await self._s.meta.put([loaded])
        except (RedisError, OSError):
            log.warning("could not cache item metadata for %s", item_id)
        return loaded

    async def _load_meta(self, tenant: Tenant, item_id: str) -> ItemMeta:
        try:
            loaded = await load_item_meta(self._s.pool, tenant.account_id, tenant.livemode, item_id)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailable("postgres", str(exc)) from exc
        if loaded is None:
            raise NotFound(f"no such subscription item: '{item_id}'", param="subscriptionItem")
        return loaded

    async def _fresh_meta(self, tenant: Tenant, meta: ItemMeta) -> tuple[ItemMeta, Schedule]:
        """The item re-read from Postgres with its period schedule, when the cached period
        has ended or a record lies past it (rare: around period boundaries)."""
        key = (tenant.account_id, tenant.livemode, meta.item_id)
        hit = self._fresh.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now and hit[1].version >= meta.version:
            return hit[1], hit[2]
        fresh = await self._load_meta(tenant, meta.item_id)
        try:
            row = await self._s.pool.fetchrow(
                "SELECT s.anchor, s.interval, s.interval_count, s.cancel_at_period_end"
                " FROM subscriptions s WHERE s.id = $1",
                fresh.subscription_id,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DependencyUnavailable("postgres", str(exc)) from exc
        if row is None:
            raise NotFound(f"no such subscription item: '{meta.item_id}'", param="subscriptionItem")
        schedule = Schedule(
            row["anchor"], row["interval"], row["interval_count"], row["cancel_at_period_end"]
        )
        if fresh.version > meta.version:
            try:
                await self._s.meta.put([fresh])
            except (RedisError, OSError):
                log.warning("could not cache item metadata for %s", meta.item_id)
        if len(self._fresh) > 10_000:
            self._fresh.clear()
        self._fresh[key] = (now + _FRESH_META_S, fresh, schedule)
        return fresh, schedule

    async def _build(
        self, tenant: Tenant, req: _Request, claim: Claim, idem_key: str | None, digest: str
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
            if state.startswith("d"):
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
        response = _render(req, tenant.livemode, request_id, created, now, duplicates)
        return (
            (response, _Stored.dumps(request_id, created, now, duplicates)),
            (entry, batched, item_key(meta.pk), len(records)),
            record_ids,
        )

    def _calendar(self, meta: ItemMeta, now: int, schedule: Schedule | None) -> Calendar:
        if schedule is not None:
            return calendar(meta, now, schedule)
        hit = self._calendars.get(id(meta))
        if hit is not None and hit[0] is meta:
            return hit[1]
        cal = calendar(meta, now, None)
        if len(self._calendars) > 10_000:
            self._calendars.clear()
        self._calendars[id(meta)] = (meta, cal)
        return cal
