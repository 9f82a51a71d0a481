"""The meter-event hot path: ``POST /v1/billing/meter_events`` and ``…/batch``.

Raw ASGI, with the usage endpoint's request cycle (``ingest.endpoint``: in-flight bound,
key, restricted-key permissions, the key's usage rate limit, bounded body) and its
guarantees: the answer is 200 only after the broker acknowledged every event (within
``publish_timeout_s``), and Redis, Kafka or Postgres away is a 503 with ``Retry-After``
that leaves nothing claimed.

Per request:

1. the body is checked strictly, a batch as a whole (``ingest.meter_models``);
2. one Redis claim (``domain.idempotency``, shared with usage: one script call per
   event-loop iteration) takes the ``Idempotency-Key`` if any and one key per given
   ``identifier``, holding a digest of its event: an identifier accepted before with the
   same event is a duplicate (answered, not published again), with another event a 400
   ``idempotency_error``, pending in another request a 409;
3. the other events are checked against the rules — an active meter for ``eventName``
   (else ``meter_not_found``), the customer under the meter's customer key in this account
   and mode (``resource_missing``), the value under its value key unless the meter counts
   (``domain.meters.parse_value``), the timestamp (``domain.meters.timestamp_refusal``:
   not ahead of now by more than the tolerance, not older than 35 days, not before the
   customer's invoiced boundary for the meter) — all at once: any refusal refuses the whole
   request and names every bad event; nothing is published;
4. the events are grouped by partition key (``domain.wire.meter_key``: one meter and
   customer's events in order in one partition), one message per group on the usage topic,
   all acknowledged before the 200; then the keys are marked done.

"Now" is real time, or for a customer whose subscription runs on a test clock that
clock's frozen time (the latest of them); it is an omitted timestamp's value.

An omitted identifier is generated (``mevt_…``); with an ``Idempotency-Key`` it is derived
from the key and the request, so a retry carries the same identifiers and the
aggregator's ledger (``meter_events``, one row per meter and identifier) drops what it
already has even when Redis forgot. Meters and customers come from per-process caches
(``ingest.meters``).
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from domain.clock import now_s
from domain.idempotency import Claim, ClaimState, RecordKey, RecordState, body_digest
from domain.idempotency.compact import inline_stored, read_stored
from domain.meters import Number, parse_value, timestamp_refusal
from domain.services import Services
from domain.tenant import Tenant
from domain.wire import MeterEvent, encode_meter_events, meter_key
from infra.errors import DependencyUnavailable, IdempotencyInFlight, IdempotencyMismatch
from infra.ids import derived_id, new_id
from infra.validation import combined_error
from ingest.endpoint import HotPath, InFlight
from ingest.meter_models import (
    EventIn,
    MeterRequest,
    event_refusal,
    parse_event_single,
    parse_events_batch,
)
from ingest.meters import CustomerSpot, Meter, MeterLookup
from ingest.publisher import UsagePublisher

__all__ = ["MeterEventsEndpoint"]

_RECORD_DIGEST_BYTES = 8  # an identifier key's digest: 16 hex characters
_NEW, _DONE, _MISMATCH, _INFLIGHT = (
    ClaimState.NEW,
    ClaimState.DONE,
    ClaimState.MISMATCH,
    ClaimState.INFLIGHT,
)
_RECORD_NEW, _RECORD_DONE = RecordState.NEW, RecordState.DONE
_RECORD_MISMATCH, _RECORD_PENDING = RecordState.MISMATCH, RecordState.PENDING

Problem = tuple[str, str, str]  # (param, code, message), as infra.validation words them
# How an event is answered: (created, timestamp), when not the request's own.
Shown = dict[int, tuple[int, int]]


class MeterEventsEndpoint(HotPath[MeterRequest]):
    """ASGI app for the two meter-event routes; ``inflight``: the usage endpoint's, so the
    process has one bound."""

    def __init__(self, services: Services, inflight: InFlight | None = None) -> None:
        super().__init__(
            services, inflight, routes=("meter_event", "meter_event_batch"), what="meter event"
        )
        self._parse_single, self._parse_batch = parse_event_single, parse_events_batch
        self._refusal = event_refusal
        self._lookup = MeterLookup(services)
        self._publisher = UsagePublisher(
            lambda: services.producer, self._cfg.usage_topic, timeout_s=self._cfg.publish_timeout_s
        )
        # The claim reads an item-metadata hash alongside; meter events have none: a key
        # that never exists.
        self._no_meta = self._cfg.key("mevt", "-")

    async def _accept(
        self, tenant: Tenant, req: MeterRequest, idem_key: str | None
    ) -> tuple[bytes, bool]:
        s, cfg = self._s, self._cfg
        self._check_kafka()
        mode = "l" if tenant.livemode else "t"
        digest = body_digest(req.canonical())
        token = self._new_token()
        account = tenant.account_id
        request_key = (
            cfg.key("idem", "mevents", account, mode, idem_key) if idem_key is not None else None
        )
        identifiers = [
            e.identifier
            or (
                new_id("mevt")
                if idem_key is None
                else derived_id("mevt", account, mode, idem_key, digest, str(i))
            )
            for i, e in enumerate(req.events)
        ]
        keyed = [i for i, e in enumerate(req.events) if e.identifier is not None]
        record_keys = [
            RecordKey(
                cfg.key("idem", "mevt", account, mode, identifiers[i]),
                body_digest(req.events[i].canonical(), _RECORD_DIGEST_BYTES),
            )
            for i in keyed
        ]
        try:
            claim = await s.idempotency.claim(
                self._no_meta, request_key, digest, token, record_keys
            )
        except (RedisError, OSError) as exc:
            raise DependencyUnavailable("redis", str(exc)) from exc
        if claim.state is not _NEW:
            return self._repeat(claim, tenant, req, identifiers, keyed), True
        # Events whose identifier was accepted before: answered as then, not published.
        seen: Shown = {}
        claimed: list[RecordKey] = []
        for j, state in enumerate(claim.records):
            if state.startswith(_RECORD_DONE):
                then, _, ts = state[1:].partition(":")
                seen[keyed[j]] = (int(then), int(ts))
            else:
                claimed.append(record_keys[j])
        try:
            created = now_s()
            events, shown = await self._checked(tenant, req, identifiers, seen, created)
            if events:
                groups: dict[bytes, list[MeterEvent]] = {}
                for event in events:
                    groups.setdefault(meter_key(event.meter_pk, event.customer_pk), []).append(
                        event
                    )
                # Until the broker acked, within publish_timeout_s: the invoicer's settle
                # time (close_settle_s) relies on this deadline.
                try:
                    await self._publisher.publish_messages(
                        [(key, encode_meter_events(group)) for key, group in groups.items()]
                    )
                except (KafkaError, TimeoutError) as exc:
                    raise self._kafka_failed(exc) from exc
        except BaseException:
            await self._release(request_key, digest, token, claimed, claim.ref)
            raise
        stored = _dump_stored(created, shown, seen)
        own = {i: f"{c}:{ts}" for i, (c, ts) in shown.items()}
        default = f"{created}:"
        self._complete(
            request_key,
            digest,
            token,
            stored,
            [
                (rk, own.get(i) or default + str(req.events[i].timestamp))
                for i, rk in zip(keyed, record_keys, strict=True)
                if i not in seen
            ],
            created,
            claim.ref,
        )
        body = _render(req, tenant.livemode, identifiers, created, shown, len(seen))
        return body, (not req.batch and bool(seen))

    async def _checked(
        self,
        tenant: Tenant,
        req: MeterRequest,
        identifiers: Sequence[str],
        seen: Shown,
        created: int,
    ) -> tuple[list[MeterEvent], Shown]:
        """The events to publish (those not ``seen``), and how each event is answered when
        not with (``created``, its timestamp): duplicates as accepted before, omitted
        timestamps as the customer's now.

        Raises InvalidRequest naming every event the rules refuse."""
        batch = req.batch
        todo = [(i, e) for i, e in enumerate(req.events) if i not in seen]
        if not todo:
            return [], dict(seen)
        problems: dict[int, list[Problem]] = {}

        def refuse(i: int, field: str, code: str, message: str) -> None:
            param = f"events[{i}].{field}" if batch else field
            problems.setdefault(i, []).append((param, code, message))

        meters = await self._lookup.meters(tenant, {e.name for _, e in todo})
        wanted: list[tuple[int, EventIn, Meter, str, Number]] = []
        for i, e in todo:
            meter = meters.get(e.name)
            if meter is None:
                refuse(
                    i,
                    "eventName",
                    "meter_not_found",
                    f"no active meter has the eventName '{e.name}' in this account and mode;"
                    " create one (POST /v1/billing/meters) or send an active meter's eventName",
                )
                continue
            customer = e.payload.get(meter.customer_key)
            field = f"payload.{meter.customer_key}"
            if customer is None:
                refuse(
                    i,
                    field,
                    "parameter_missing",
                    f"missing required parameter: {field} (the id of the customer the event is"
                    f" for, under the meter {meter.id}'s customer key)",
                )
                continue
            if type(customer) is not str:
                refuse(i, field, "parameter_invalid", f"{field} must be a customer id (cust_…)")
                continue
            value: Number = 1  # a count meter counts events: its values are not read
            if meter.formula != "count":
                raw = e.payload.get(meter.value_key)
                vfield = f"payload.{meter.value_key}"
                if raw is None:
                    refuse(
                        i,
                        vfield,
                        "parameter_missing",
                        f"missing required parameter: {vfield} (the event's value for the"
                        f" {meter.formula} meter {meter.id})",
                    )
                    continue
                try:
                    value = parse_value(raw)
                except ValueError as exc:
                    refuse(i, vfield, "parameter_invalid", f"invalid {vfield}: {exc}")
                    continue
            wanted.append((i, e, meter, customer, value))
        spots: dict[tuple[int, str], CustomerSpot] = (
            await self._lookup.customers(tenant, [(m.pk, c) for _, _, m, c, _ in wanted])
            if wanted
            else {}
        )
        real_now = now_s()
        tolerance = self._cfg.future_tolerance_s
        shown: Shown = dict(seen)
        events: list[MeterEvent] = []
        for i, e, meter, customer, value in wanted:
            spot = spots.get((meter.pk, customer))
            if spot is None:
                refuse(
                    i,
                    f"payload.{meter.customer_key}",
                    "resource_missing",
                    f"no such customer: '{customer}'",
                )
                continue
            now = real_now if spot.clock_now is None else spot.clock_now
            ts = now if e.timestamp is None else e.timestamp
            refusal = timestamp_refusal(ts, now, spot.closing_until, future_tolerance_s=tolerance)
            if refusal is not None:
                refuse(i, "timestamp", refusal[0], refusal[1])
                continue
            if e.timestamp is None:
                shown[i] = (created, ts)
            events.append(
                MeterEvent(
                    identifiers[i],
                    tenant.account_id,
                    tenant.livemode,
                    meter.pk,
                    spot.customer_pk,
                    ts,
                    value,
                    created,
                )
            )
        if problems:
            raise combined_error([p for i in sorted(problems) for p in problems[i]])
        return events, shown

    def _repeat(
        self,
        claim: Claim,
        tenant: Tenant,
        req: MeterRequest,
        identifiers: Sequence[str],
        keyed: Sequence[int],
    ) -> bytes:
        """The answer to a request whose claim did not go ahead: a replay of the one its
        ``Idempotency-Key`` answered, or the refusal (mismatch 400, pending 409)."""
        if claim.state is _DONE:
            created, shown, dups = _load_stored(claim.stored)
            return _render(req, tenant.livemode, identifiers, created, shown, dups)
        if claim.state is _MISMATCH:
            raise IdempotencyMismatch(
                "this Idempotency-Key was already used with a different request body;"
                " use a new key for a new request",
                param="Idempotency-Key",
            )
        if claim.state is _INFLIGHT:
            raise IdempotencyInFlight(
                "a request with this Idempotency-Key is still being processed; retry in a moment"
            )

        def named(i: int) -> str:
            return f"events[{i}].identifier" if req.batch else "identifier"

        other = [named(keyed[j]) for j, st in enumerate(claim.records) if st == _RECORD_MISMATCH]
        if other:
            raise IdempotencyMismatch(
                f"identifiers already used with a different event: {', '.join(other)}; an"
                " identifier names one event — use a new identifier for a new event; nothing"
                " was recorded",
                param=other[0],
            )
        pending = [named(keyed[j]) for j, st in enumerate(claim.records) if st == _RECORD_PENDING]
        raise IdempotencyInFlight(
            f"events with these identifiers are still being processed by another request:"
            f" {', '.join(pending)}; retry in a moment",
            param=pending[0] if pending else None,
        )


def _dump_stored(created: int, shown: Shown, seen: Shown) -> bytes:
    """What the request's Idempotency-Key stores: its time alone (compact, inline in the
    key's entry) when every event was its own, else the events answered otherwise."""
    if not shown and not seen:
        inline = inline_stored(created, created)
        if inline is not None:
            return inline
    return orjson.dumps([created, shown, sorted(seen)], option=orjson.OPT_NON_STR_KEYS)


def _load_stored(raw: bytes) -> tuple[int, Shown, int]:
    """``_dump_stored``'s (created, shown, the number of duplicates) back."""
    times = read_stored(raw)
    if times is not None:
        return times[0], {}, 0
    created, stored, dups = orjson.loads(raw)
    return created, {int(i): (c, ts) for i, (c, ts) in stored.items()}, len(dups)


def _render(
    req: MeterRequest,
    livemode: bool,
    identifiers: Sequence[str],
    created: int,
    shown: Shown,
    duplicates: int,
) -> bytes:
    """The answer: a ``billing.meter_event``, or a ``billing.meter_event_batch`` of them."""
    data = []
    for i, e in enumerate(req.events):
        at = shown.get(i)
        data.append(
            {
                "object": "billing.meter_event",
                "eventName": e.name,
                "identifier": identifiers[i],
                "payload": e.payload,
                "timestamp": at[1] if at is not None else e.timestamp,
                "created": at[0] if at is not None else created,
                "livemode": livemode,
            }
        )
    if not req.batch:
        return orjson.dumps(data[0])
    return orjson.dumps(
        {
            "object": "billing.meter_event_batch",
            "created": created,
            "livemode": livemode,
            "count": len(data),
            "duplicates": duplicates,
            "data": data,
        }
    )
