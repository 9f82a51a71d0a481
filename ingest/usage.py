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

This module is the endpoint (its request cycle — in-flight bound, key, limit, body — is
``ingest.endpoint``, shared with the meter events): it drives a request through
``ingest.parse`` (the body), the idempotency claim, ``ingest.rules`` (where its records
land), the publish and ``ingest.results`` (the answer and what its key keeps).

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

import time

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from domain.clock import now_s, subscription_now
from domain.idempotency import Claim, ClaimState, RecordKey, RecordState, body_digest
from domain.services import Services
from domain.tenant import Tenant
from domain.wire import Entry, item_key, usage_entry
from infra.errors import DependencyUnavailable
from infra.ids import derived_id, new_id
from infra.telemetry import M
from infra.validation import combined_error
from ingest.endpoint import HotPath, InFlight
from ingest.items import ItemLookup
from ingest.parse import Request, parse_batch, parse_single, refusal
from ingest.publisher import Records, UsagePublisher
from ingest.results import answer_repeat, dump_stored, render
from ingest.rules import check_item, needs_schedule, place_each

__all__ = ["UsageEndpoint"]

_SINGLE_PARAMS = ["timestamp"]  # place_each's name for a single record's timestamp
_RECORD_DIGEST_BYTES = 8  # a per-record key's digest: 16 hex characters
# Enum members looked up once: an enum class attribute costs ~80 ns a read on 3.11.
_NEW, _RECORD_NEW, _RECORD_DONE = ClaimState.NEW, RecordState.NEW, RecordState.DONE


class UsageEndpoint(HotPath[Request]):
    """ASGI app for the two usage routes; ``services`` must be started before traffic."""

    def __init__(self, services: Services, inflight: InFlight | None = None) -> None:
        super().__init__(services, inflight, routes=("single", "batch"), what="usage")
        self._parse_single, self._parse_batch, self._refusal = parse_single, parse_batch, refusal
        items = ItemLookup(services)
        # bound once: the per-request calls cost what they did as methods of the endpoint
        self._meta, self._fresh_meta, self._calendar = items.meta, items.fresh, items.calendar
        self._publisher = UsagePublisher(
            lambda: services.producer, self._cfg.usage_topic, timeout_s=self._cfg.publish_timeout_s
        )

    async def _accept(
        self, tenant: Tenant, req: Request, idem_key: str | None
    ) -> tuple[bytes, bool]:
        s, cfg = self._s, self._cfg
        if time.monotonic() < self._kafka_down_until:  # HotPath._check_kafka, inlined
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
            derived = (
                derived_id("mbu", tenant.account_id, mode, idem_key, digest)
                if idem_key is not None
                else ""
            )
            return answer_repeat(claim, req, tenant.livemode, derived), True
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
                    raise self._kafka_failed(exc) from exc
        except BaseException:
            await self._release(request_key, digest, token, claimed, claim.ref)
            raise
        M.usage.records += count
        self._complete(
            request_key,
            digest,
            token,
            response[1],
            list(zip(claimed, record_ids, strict=True)) if claimed else [],
            response[2],
            claim.ref,
        )
        return response[0], False

    async def _build(
        self, tenant: Tenant, req: Request, claim: Claim, idem_key: str | None, digest: str
    ) -> tuple[tuple[bytes, bytes, int], tuple[Entry, Records | None, bytes, int], list[str]]:
        """((response, stored, created), (the request's entry in a Kafka message, its records when
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
            (response, dump_stored(request_id, created, now, duplicates), created),
            (entry, batched, item_key(meta.pk), len(records)),
            record_ids,
        )
