"""Turning fetched Kafka messages into one prepared, pre-aggregated batch. Pure: no I/O.

Everything per request happens here, outside the database transaction (and, in the worker,
while the previous batch's transaction runs): decoding message headers, checking each
request's ops (its records collapsed per timestamp by the ingest, ``domain.wire``), and
merging the requests of each window in arrival order. The store then writes one row per
touched timestamp and per window.

A batch assumes every request in it is new; when the ledger says otherwise (a client retry
that slipped past Redis), ``window_deltas`` rebuilds the affected windows from the fresh
requests only.

Meter-event messages share the topic (``domain.wire``): each event is checked (types, its
value by ``domain.meters.parse_value``), given its arrival position (``seq``), kept once per
(meter, identifier) — the first copy wins — and pre-aggregated per (meter, customer,
minute) bucket (``bucket_deltas``). The same assumption holds: the store rebuilds the
buckets of events the ledger did not count.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

from domain.fold import InvalidRecords, Op, merge_ops, ops_of
from domain.meters import BUCKET_S, Number, Stats, bucket_of, merge, parse_value
from domain.meterusage import SEQ_INDEX_SPAN
from domain.wire import decode_head, decode_meter_events, is_meter_message, records_of

__all__ = [
    "Appended",
    "BatchBuilder",
    "BucketKey",
    "MeterEntry",
    "PartitionRange",
    "PreparedBatch",
    "Request",
    "WindowDelta",
    "WindowKey",
    "appended",
    "bucket_deltas",
    "decode_meter_entries",
    "decode_requests",
    "prepare",
    "window_deltas",
]

log = logging.getLogger(__name__)

WindowKey = tuple[int, int]  # (item_pk, period_start)
BucketKey = tuple[int, int, int]  # (meter_pk, customer_pk, minute)
MeterKey = tuple[int, str]  # (meter_pk, identifier): the unit of dedupe for meter events

_BIGINT = 2**63 - 1
_INT32 = 2**31 - 1  # usage_ledger.records


@dataclass(slots=True)
class Request:
    """One accepted request (a record or a whole batch): the unit of the ledger."""

    id: str
    account_id: str
    livemode: bool
    item_pk: int
    period_start: int
    period_end: int
    accepted_at: int
    partition: int
    offset: int
    count: int  # records in the request
    payload: bytes  # its ops, for the ledger (replay)
    ops: dict[int, Op] | None  # None: the request is invalid (dead-lettered)
    error: str | None = None
    raw: bytes = b""  # the Kafka message it came in, and its place there:
    index: int = 0  # the records are read from it only for dead letters

    @property
    def window(self) -> WindowKey:
        return (self.item_pk, self.period_start)

    def records(self) -> list[Any]:
        """The request's records as published (for dead letters; parsed on demand)."""
        try:
            return records_of(self.raw, self.index)
        except (ValueError, TypeError):
            return []


class Appended(NamedTuple):
    """A delta of increments only, summarised for a window whose latest timestamp lies
    before ``first_ts`` (or that holds no point yet): the map has no point at any of the
    delta's timestamps, so each op is its point's new quantity, and ``fold_ops`` comes down
    to these five figures (the store folds them in SQL, guarded by that condition)."""

    first_ts: int
    last_ts: int
    last_quantity: int  # the op at ``last_ts``
    total: int  # Σ of the ops
    max: int  # the largest op


def appended(ops: dict[int, Op]) -> Appended | None:
    """``ops`` as an ``Appended`` summary; None when an op is a ``set`` (those keep the full
    fold, which a ``set`` may need for ``max``)."""
    if len(ops) == 1:
        for ts, (is_set, value) in ops.items():
            return None if is_set else Appended(ts, ts, value, value, value)
    if not ops:
        return None
    sets, values = zip(*ops.values())  # noqa: B905 (the pairs are Ops)
    if True in sets:
        return None
    last = max(ops)
    return Appended(min(ops), last, ops[last].value, sum(values), max(values))


@dataclass(slots=True)
class WindowDelta:
    """The pre-aggregated change to one window: ops per timestamp, in arrival order, and
    their ``Appended`` summary when they hold increments only."""

    period_end: int
    ops: dict[int, Op] = field(default_factory=dict)
    records: int = 0
    appended: Appended | None = None


@dataclass(slots=True)
class MeterEntry:
    """One meter event of a message, checked. ``error`` set: malformed, never counted (the
    ledger keeps it as rejected when its meter and identifier are usable)."""

    identifier: str
    account_id: str
    livemode: bool
    meter_pk: int
    customer_pk: int | None
    ts: int | None
    value: Number | None
    accepted_at: int | None
    partition: int
    offset: int
    index: int
    error: str | None = None

    @property
    def key(self) -> MeterKey:
        return (self.meter_pk, self.identifier)

    @property
    def seq(self) -> int:
        """The arrival position: orders events of one meter and customer (one partition)."""
        return self.offset * SEQ_INDEX_SPAN + self.index

    @property
    def storable(self) -> bool:
        """Its ledger row can be written (a malformed event's too, as rejected): its meter
        and identifier are usable."""
        return self.meter_pk > 0 and _is_identifier(self.identifier)

    @property
    def counts(self) -> bool:
        """Well-formed: it counts unless the ledger or an invoiced boundary says otherwise."""
        return self.error is None

    @property
    def bucket(self) -> BucketKey:
        """Its bucket (a well-formed event's)."""
        return (self.meter_pk, self.customer_pk or 0, bucket_of(self.ts or 0))


@dataclass(frozen=True, slots=True)
class PartitionRange:
    start: int  # must equal the stored offset (fencing)
    next: int  # the stored offset once the batch commits


@dataclass(slots=True)
class PreparedBatch:
    ranges: dict[int, PartitionRange]
    requests: list[Request]  # first occurrence of each id, arrival order
    windows: dict[WindowKey, WindowDelta]  # assuming every request is new
    messages: int = 0
    duplicates_in_batch: int = 0
    undecodable: int = 0
    # first occurrence of each (meter, identifier), arrival order; malformed ones included
    meter_events: list[MeterEntry] = field(default_factory=list)
    buckets: dict[BucketKey, Stats] = field(default_factory=dict)  # assuming every event counts
    meter_duplicates_in_batch: int = 0

    @property
    def records(self) -> int:
        return sum(r.count for r in self.requests)

    def only(self, partitions: Collection[int]) -> PreparedBatch | None:
        """The batch restricted to ``partitions`` (None when none of them is in it)."""
        ranges = {p: r for p, r in self.ranges.items() if p in partitions}
        if len(ranges) == len(self.ranges):
            return self
        if not ranges:
            return None
        requests = [r for r in self.requests if r.partition in ranges]
        events = [e for e in self.meter_events if e.partition in ranges]
        return PreparedBatch(
            ranges,
            requests,
            window_deltas(requests),
            self.messages,
            self.duplicates_in_batch,
            self.undecodable,
            events,
            bucket_deltas(events),
            self.meter_duplicates_in_batch,
        )


def decode_requests(raw: bytes, partition: int, offset: int) -> list[Request]:
    """The requests of one usage message (``domain.wire``), reading only its header.

    Raises:
        ValueError: not a usage message of this version (a request whose ops are bad comes
            back with ``ops=None`` and the reason in ``error``).
    """
    try:
        entries = decode_head(raw)
    except ValueError as exc:
        raise ValueError(f"undecodable usage message: {exc}") from exc
    out = []
    for index, (id_, account, livemode, item_pk, start, end, at, count, ops) in enumerate(entries):
        bad = _header_error(item_pk, start, end, at, count, ops)
        if bad is not None:
            # Its ledger row and dead letter hold zeros where the header had what no
            # column takes: Postgres refusing a value would fail the whole batch, again
            # at every retry. What was published is in the error and the raw message.
            item_pk = start = end = at = count = 0
        request = Request(
            id_,
            str(account),
            livemode is True,
            item_pk,
            start,
            end,
            at,
            partition,
            offset,
            count,
            b"",
            None,
            None if bad is None else f"malformed request entry: {bad}",
            raw,
            index,
        )
        if bad is None:
            try:
                request.ops = ops_of(ops, start, end)
                request.payload = orjson.dumps(ops)
            except InvalidRecords as exc:
                request.error = str(exc)
        out.append(request)
    return out


def _header_error(item_pk: Any, start: Any, end: Any, at: Any, count: Any, ops: Any) -> str | None:
    """What is wrong with a request's header fields, in the ranges of their columns, or
    None."""
    if not _is_bigint(item_pk):
        return f"item_pk {item_pk!r:.40} is not a bigint"
    if not (_is_bigint(start) and _is_bigint(end) and _is_bigint(at)):
        return f"period {start!r:.40}..{end!r:.40} or accepted_at {at!r:.40} is not a bigint"
    if type(count) is not int or not 0 < count <= _INT32:
        return f"record count {count!r:.40} is not a positive int"
    if type(ops) is not list or not 0 < len(ops) <= count:
        return "ops must be a list of 1 to count entries"
    return None


def _is_bigint(v: Any) -> bool:
    return type(v) is int and -_BIGINT - 1 <= v <= _BIGINT


def _is_id(v: Any) -> bool:
    return type(v) is int and 0 < v <= _BIGINT


def _is_identifier(v: str) -> bool:
    return 0 < len(v) <= 100 and "\x00" not in v


def _is_time(v: Any) -> bool:
    return type(v) is int and 0 <= v <= _BIGINT


def _meter_error(
    identifier: str, livemode: Any, meter_pk: Any, customer_pk: Any, ts: Any, at: Any
) -> str | None:
    """What is wrong with an event's fields (its value aside), or None."""
    if not _is_id(meter_pk):
        return "meter_pk must be a positive integer"
    if not _is_identifier(identifier):
        return "identifier must be 1 to 100 characters, without NUL"
    if not _is_id(customer_pk):
        return "customer_pk must be a positive integer"
    if not _is_time(ts):
        return "timestamp must be a non-negative integer"
    if not _is_time(at):
        return "accepted_at must be a non-negative integer"
    if type(livemode) is not bool:
        return "livemode must be a boolean"
    return None


def decode_meter_entries(raw: bytes, partition: int, offset: int) -> list[MeterEntry]:
    """The events of one meter-event message (``domain.wire``), each checked.

    Raises:
        ValueError: not a meter-event message of this version (a malformed event comes back
            with the reason in ``error``).
    """
    try:
        events = decode_meter_events(raw)
    except ValueError as exc:
        raise ValueError(f"undecodable meter-event message: {exc}") from exc
    out = []
    for index, (identifier, account, livemode, meter_pk, customer_pk, ts, value, at) in enumerate(
        events
    ):
        if (
            type(meter_pk) is int
            and type(customer_pk) is int
            and type(ts) is int
            and type(at) is int
            and type(livemode) is bool
            and 0 < meter_pk <= _BIGINT
            and 0 < customer_pk <= _BIGINT
            and 0 <= ts <= _BIGINT
            and 0 <= at <= _BIGINT
            and 0 < len(identifier) <= 100
            and "\x00" not in identifier
        ):
            error = None
            try:
                parsed: Number | None = parse_value(value)
            except ValueError as exc:
                parsed, error = None, str(exc)
            out.append(
                MeterEntry(
                    identifier,
                    str(account),
                    livemode,
                    meter_pk,
                    customer_pk,
                    ts,
                    parsed,
                    at,
                    partition,
                    offset,
                    index,
                    error,
                )
            )
            continue
        out.append(
            MeterEntry(
                identifier,
                str(account),
                livemode is True,
                meter_pk if _is_id(meter_pk) else 0,
                customer_pk if _is_id(customer_pk) else None,
                ts if _is_time(ts) else None,
                None,
                at if _is_time(at) else None,
                partition,
                offset,
                index,
                _meter_error(identifier, livemode, meter_pk, customer_pk, ts, at),
            )
        )
    return out


def bucket_deltas(events: Iterable[MeterEntry]) -> dict[BucketKey, Stats]:
    """Merge valid events into per-(meter, customer, minute) stats, in the order given."""
    buckets: dict[BucketKey, Stats] = {}
    get = buckets.get
    for e in events:
        ts, value = e.ts, e.value
        if e.error is not None or value is None or ts is None:
            continue
        key = (e.meter_pk, e.customer_pk or 0, ts - ts % BUCKET_S)
        stats = Stats(value, 1, value, ts, value, e.offset * SEQ_INDEX_SPAN + e.index)
        held = get(key)
        if held is None:
            buckets[key] = stats
        else:
            merge(held, stats)
    return buckets


def window_deltas(requests: Iterable[Request]) -> dict[WindowKey, WindowDelta]:
    """Merge valid requests into per-window deltas, in the order given (arrival order)."""
    windows: dict[WindowKey, WindowDelta] = {}
    unsure: list[WindowDelta] = []
    for r in requests:
        _add_request(windows, r, unsure)
    _settle(unsure)
    return windows


def _add_request(
    windows: dict[WindowKey, WindowDelta], r: Request, unsure: list[WindowDelta]
) -> None:
    """Merge one valid request into its window's delta; a delta whose summary only its
    merged ops can tell goes to ``unsure`` (see ``_settle``)."""
    ops = r.ops
    if ops is None:
        return
    key = (r.item_pk, r.period_start)
    delta = windows.get(key)
    if delta is None:
        windows[key] = WindowDelta(r.period_end, dict(ops), r.count, appended(ops))
        return
    merge_ops(delta.ops, ops)
    delta.records += r.count
    first, later = delta.appended, appended(ops)
    if first is None or later is None:
        delta.appended = None  # a set stays a set at its timestamp (or _settle decides)
    elif later.first_ts > first.last_ts:  # one after the other: no timestamp in common
        delta.appended = Appended(
            first.first_ts,
            later.last_ts,
            later.last_quantity,
            first.total + later.total,
            max(first.max, later.max),
        )
    else:
        delta.appended = None
        unsure.append(delta)


def _settle(unsure: list[WindowDelta]) -> None:
    """Summaries from the merged ops, for deltas whose requests overlapped in time."""
    for delta in unsure:
        delta.appended = appended(delta.ops)


class BatchBuilder:
    """Builds a ``PreparedBatch`` message by message, so a caller can yield between slices.

    ``positions`` holds where each partition's batch starts (the offset the consumer was
    sought to, or the previous batch's end); messages before it are ignored. Within the
    batch, only the first message of a request id counts (a client retry published twice).
    """

    def __init__(self, positions: dict[int, int]) -> None:
        self._positions = positions
        self._requests: dict[str, Request] = {}
        self._events: dict[MeterKey, MeterEntry] = {}
        self._ranges: dict[int, PartitionRange] = {}
        self._windows: dict[WindowKey, WindowDelta] = {}
        self._unsure: list[WindowDelta] = []
        self._batch = PreparedBatch(self._ranges, [], self._windows)

    def add(self, partition: int, messages: Sequence[Any]) -> None:
        """Messages of one partition, in offset order, continuing what was added before."""
        span = self._ranges.get(partition)
        start = self._positions[partition] if span is None else span.next
        last = None
        batch, requests, events = self._batch, self._requests, self._events
        windows, unsure = self._windows, self._unsure
        for msg in messages:
            if msg.offset < start:
                continue
            last = msg.offset
            batch.messages += 1
            if is_meter_message(msg.value):
                try:
                    entries = decode_meter_entries(msg.value, partition, msg.offset)
                except ValueError as exc:
                    batch.undecodable += 1
                    log.error("partition %d offset %d skipped: %s", partition, msg.offset, exc)
                    continue
                for entry in entries:
                    key = (entry.meter_pk, entry.identifier)
                    if key in events:
                        batch.meter_duplicates_in_batch += 1
                    else:
                        events[key] = entry
                continue
            try:
                decoded = decode_requests(msg.value, partition, msg.offset)
            except ValueError as exc:
                batch.undecodable += 1
                log.error("partition %d offset %d skipped: %s", partition, msg.offset, exc)
                continue
            for request in decoded:
                if request.id in requests:
                    batch.duplicates_in_batch += 1
                else:
                    requests[request.id] = request
                    _add_request(windows, request, unsure)
        if last is not None:
            self._ranges[partition] = PartitionRange(
                start if span is None else span.start, last + 1
            )

    def build(self) -> PreparedBatch:
        batch = self._batch
        batch.requests = list(self._requests.values())
        _settle(self._unsure)  # the windows were merged as the requests came
        self._unsure.clear()
        batch.meter_events = list(self._events.values())
        batch.buckets = bucket_deltas(batch.meter_events)
        return batch


def prepare(fetched: dict[int, Sequence[Any]], positions: dict[int, int]) -> PreparedBatch:
    """A batch from ``fetched`` (partition → aiokafka ConsumerRecords, in offset order)."""
    builder = BatchBuilder(positions)
    for partition in sorted(fetched):
        builder.add(partition, fetched[partition])
    return builder.build()
