"""Turning fetched Kafka messages into one prepared, pre-aggregated batch. Pure: no I/O.

Everything per record happens here, outside the database transaction (and, in the worker,
while the previous batch's transaction runs): decoding, validation, collapsing each
request's records to one op per timestamp, and merging the requests of each window in
arrival order. The store then writes one row per touched timestamp and per window.

A batch assumes every request in it is new; when the ledger says otherwise (a client retry
that slipped past Redis), ``window_deltas`` rebuilds the affected windows from the fresh
requests only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from aggregator.fold import InvalidRecords, Op, collapse, merge_ops
from vinr.wire import decode_envelope

__all__ = ["BatchBuilder", "PartitionRange", "PreparedBatch", "Request", "WindowDelta",
           "WindowKey", "decode_request", "prepare", "window_deltas"]

log = logging.getLogger(__name__)

WindowKey = tuple[int, int]  # (item_pk, period_start)


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
    count: int                     # records in the request
    payload: bytes                 # the records, for the ledger (replay) and dead letters
    ops: dict[int, Op] | None      # None: the records are invalid (dead-lettered)
    error: str | None = None

    @property
    def window(self) -> WindowKey:
        return (self.item_pk, self.period_start)


@dataclass(slots=True)
class WindowDelta:
    """The pre-aggregated change to one window: ops per timestamp, in arrival order."""

    period_end: int
    ops: dict[int, Op] = field(default_factory=dict)
    records: int = 0


@dataclass(frozen=True, slots=True)
class PartitionRange:
    start: int        # must equal the stored offset (fencing)
    next: int         # the stored offset once the batch commits


@dataclass(slots=True)
class PreparedBatch:
    ranges: dict[int, PartitionRange]
    requests: list[Request]                 # first occurrence of each id, arrival order
    windows: dict[WindowKey, WindowDelta]   # assuming every request is new
    messages: int = 0
    duplicates_in_batch: int = 0
    undecodable: int = 0

    @property
    def records(self) -> int:
        return sum(r.count for r in self.requests)


def decode_request(raw: bytes, partition: int, offset: int) -> Request:
    """Decode one usage message (``vinr.wire`` format) without per-record Python work.

    Raises:
        ValueError: not a usage message of this version (the records themselves are checked
            by ``collapse``; a request whose records are bad comes back with ``ops=None``).
    """
    try:
        e = decode_envelope(raw)
    except ValueError as exc:
        raise ValueError(f"undecodable usage message: {exc}") from exc
    records = e.records
    request = Request(
        id=e.id, account_id=e.account_id, livemode=e.livemode, item_pk=e.item_pk,
        period_start=e.period_start, period_end=e.period_end, accepted_at=e.accepted_at,
        partition=partition, offset=offset, count=len(records),
        payload=orjson.dumps(records), ops=None)
    try:
        request.ops = collapse(records, request.period_start, request.period_end)
    except InvalidRecords as exc:
        request.error = str(exc)
    return request


def window_deltas(requests: Iterable[Request]) -> dict[WindowKey, WindowDelta]:
    """Merge valid requests into per-window deltas, in the order given (arrival order)."""
    windows: dict[WindowKey, WindowDelta] = {}
    for r in requests:
        if r.ops is None:
            continue
        key = (r.item_pk, r.period_start)
        delta = windows.get(key)
        if delta is None:
            windows[key] = WindowDelta(r.period_end, dict(r.ops), r.count)
        else:
            merge_ops(delta.ops, r.ops)
            delta.records += r.count
    return windows


class BatchBuilder:
    """Builds a ``PreparedBatch`` message by message, so a caller can yield between slices.

    ``positions`` holds where each partition's batch starts (the offset the consumer was
    sought to, or the previous batch's end); messages before it are ignored. Within the
    batch, only the first message of a request id counts (a client retry published twice).
    """

    def __init__(self, positions: dict[int, int]) -> None:
        self._positions = positions
        self._requests: dict[str, Request] = {}
        self._ranges: dict[int, PartitionRange] = {}
        self._batch = PreparedBatch(self._ranges, [], {})

    def add(self, partition: int, messages: Sequence[Any]) -> None:
        """Messages of one partition, in offset order, continuing what was added before."""
        span = self._ranges.get(partition)
        start = self._positions[partition] if span is None else span.next
        last = None
        batch, requests = self._batch, self._requests
        for msg in messages:
            if msg.offset < start:
                continue
            last = msg.offset
            batch.messages += 1
            try:
                request = decode_request(msg.value, partition, msg.offset)
            except ValueError as exc:
                batch.undecodable += 1
                log.error("partition %d offset %d skipped: %s", partition, msg.offset, exc)
                continue
            if request.id in requests:
                batch.duplicates_in_batch += 1
            else:
                requests[request.id] = request
        if last is not None:
            self._ranges[partition] = PartitionRange(
                start if span is None else span.start, last + 1)

    def build(self) -> PreparedBatch:
        batch = self._batch
        batch.requests = list(self._requests.values())
        batch.windows = window_deltas(batch.requests)
        return batch


def prepare(fetched: dict[int, Sequence[Any]], positions: dict[int, int]) -> PreparedBatch:
    """A batch from ``fetched`` (partition → aiokafka ConsumerRecords, in offset order)."""
    builder = BatchBuilder(positions)
    for partition in sorted(fetched):
        builder.add(partition, fetched[partition])
    return builder.build()
