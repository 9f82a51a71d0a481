"""Turning fetched Kafka messages into one prepared, pre-aggregated batch. Pure: no I/O.

Everything per request happens here, outside the database transaction (and, in the worker,
while the previous batch's transaction runs): decoding message headers, checking each
request's ops (its records collapsed per timestamp by the ingest, ``domain.wire``), and
merging the requests of each window in arrival order. The store then writes one row per
touched timestamp and per window.

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

from domain.fold import InvalidRecords, Op, merge_ops, ops_of
from domain.wire import decode_head, records_of

__all__ = [
    "BatchBuilder",
    "PartitionRange",
    "PreparedBatch",
    "Request",
    "WindowDelta",
    "WindowKey",
    "decode_requests",
    "prepare",
    "window_deltas",
]

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


@dataclass(slots=True)
class WindowDelta:
    """The pre-aggregated change to one window: ops per timestamp, in arrival order."""

    period_end: int
    ops: dict[int, Op] = field(default_factory=dict)
    records: int = 0


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

    @property
    def records(self) -> int:
        return sum(r.count for r in self.requests)


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
            None,
            raw,
            index,
        )
        try:
            if (
                type(item_pk) is not int
                or type(start) is not int
                or type(end) is not int
                or type(at) is not int
                or type(count) is not int
                or type(ops) is not list
                or not 0 < len(ops) <= count
            ):
                raise InvalidRecords("malformed request entry")
            request.ops = ops_of(ops, start, end)
            request.payload = orjson.dumps(ops)
        except InvalidRecords as exc:
            request.error = str(exc)
        out.append(request)
    return out


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
        if last is not None:
            self._ranges[partition] = PartitionRange(
                start if span is None else span.start, last + 1
            )

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
