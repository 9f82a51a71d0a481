"""The usage message on the Kafka topic: accepted requests, pre-aggregated by the ingest.

A message holds one or more accepted requests (a record or a batch each) of one
partition, in arrival order. Key: the item key of its first request (``item_key``: one
item's requests keep their order in one partition). Value::

    header                      orjson {"v": 2, "q": [entry, …]}
    header b"\\n" records        when some request has several records

    entry   = [id, account, livemode, item_pk, period_start, period_end, accepted_at,
               record_count, ops]
    ops     = [[timestamp, quantity, is_set], …]   one per distinct timestamp
    records = [null | [[timestamp, quantity, is_set], …], …]   aligned with "q"

A meter-event message shares the topic (so the invoicer's completeness watermark covers
meter events too) and the version; its header holds events instead of requests::

    header                      orjson {"v": 2, "m": [event, …]}
    event   = [identifier, account, livemode, meter_pk, customer_pk, timestamp, value,
               accepted_at]

``value`` is an integer or an exact decimal string. Key: ``meter_key`` (one meter and
customer's events keep their order in one partition, which ``last`` relies on).

``ops`` is the request's records collapsed in arrival order (``domain.fold``: a ``set``
replaces what came before it at its timestamp, an increment adds): everything a window
depends on. The ingest, which validates every record anyway, collapses them, so the
aggregator reads only the header — a few ops per request — and never touches records one
by one. The records themselves follow the header for the topic's other readers and for
dead letters; a single record is its own op and is not repeated. The message carries the
period the ingest validated against, so the aggregator never recomputes period boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from domain.fold import collapse_valid
from domain.meters import Number, decimal_text

__all__ = [
    "Entry",
    "MeterEvent",
    "UsageMessage",
    "decode_head",
    "decode_meter_events",
    "decode_usage",
    "encode_entries",
    "encode_meter_events",
    "encode_usage",
    "is_meter_message",
    "item_key",
    "meter_key",
    "records_of",
    "usage_entry",
]

VERSION = 2
_HEAD_END = b"\n"

Entry = list[Any]  # one request in a message's header (see the module docstring)


@dataclass(frozen=True, slots=True)
class UsageMessage:
    """One accepted request, with its records (before collapsing)."""

    id: str
    account_id: str
    livemode: bool
    item_pk: int
    period_start: int
    period_end: int
    accepted_at: int
    records: list[tuple[int, int, bool]]


def item_key(item_pk: int) -> bytes:
    return str(item_pk).encode()


def usage_entry(
    id: str,
    account_id: str,
    livemode: bool,
    item_pk: int,
    period_start: int,
    period_end: int,
    accepted_at: int,
    records: Sequence[tuple[int, int, bool]],
) -> tuple[Entry, Sequence[tuple[int, int, bool]] | None]:
    """A request's header entry, and its records when they must follow the header."""
    if len(records) == 1:  # a single record is its own op (most requests)
        return [
            id,
            account_id,
            livemode,
            item_pk,
            period_start,
            period_end,
            accepted_at,
            1,
            [records[0]],
        ], None
    try:
        ops: list[Any] = [(ts, op.value, op.is_set) for ts, op in collapse_valid(records).items()]
    except (TypeError, ValueError):
        # Not the ingest's (validated) records: pass them on as they are, so the aggregator
        # dead-letters them with the reason instead of this producer failing.
        ops = list(records)
    entry = [
        id,
        account_id,
        livemode,
        item_pk,
        period_start,
        period_end,
        accepted_at,
        len(records),
        ops,
    ]
    return entry, (records if len(records) > 1 else None)


def encode_entries(
    entries: Sequence[Entry], records: Sequence[Sequence[tuple[int, int, bool]] | None]
) -> bytes:
    """One message from requests of one partition, in arrival order."""
    head = orjson.dumps({"v": VERSION, "q": entries})
    if not any(r is not None for r in records):
        return head
    return b"".join((head, _HEAD_END, orjson.dumps(records)))


def encode_usage(*messages: UsageMessage) -> bytes:
    entries, records = [], []
    for m in messages:
        entry, recs = usage_entry(
            m.id,
            m.account_id,
            m.livemode,
            m.item_pk,
            m.period_start,
            m.period_end,
            m.accepted_at,
            m.records,
        )
        entries.append(entry)
        records.append(recs)
    return encode_entries(entries, records)


def decode_head(raw: bytes) -> list[Entry]:
    """The header entries, unchecked beyond their shape (the aggregator checks the ops).

    Raises:
        ValueError: not a usage message of this version.
    """
    cut = raw.find(_HEAD_END)
    try:
        d = orjson.loads(raw if cut < 0 else memoryview(raw)[:cut])
        version = d.get("v") if type(d) is dict else None
        entries = d["q"] if type(version) is int and version == VERSION else None
    except (orjson.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"not a usage message: {exc}") from exc
    if type(entries) is not list or not entries:
        raise ValueError("not a usage message of version 2 (no requests)")
    for entry in entries:
        if type(entry) is not list or len(entry) != 9 or type(entry[0]) is not str:
            raise ValueError("malformed request entry")
    return entries


def records_of(raw: bytes, index: int) -> list[Any]:
    """The records of the message's ``index``-th request (its op when it had one record)."""
    cut = raw.find(_HEAD_END)
    if cut >= 0:
        section = orjson.loads(memoryview(raw)[cut + 1 :])
        if type(section) is list and index < len(section) and section[index] is not None:
            return list(section[index])
    return list(decode_head(raw)[index][8])


def decode_usage(raw: bytes) -> list[UsageMessage]:
    """Every request of a message, with its records (tools and tests; not the hot path).

    Raises:
        ValueError: a message this version cannot read.
    """
    out = []
    for index, e in enumerate(decode_head(raw)):
        try:
            records = [(int(ts), int(q), bool(s)) for ts, q, s in records_of(raw, index)]
            out.append(
                UsageMessage(
                    e[0], str(e[1]), bool(e[2]), int(e[3]), int(e[4]), int(e[5]), int(e[6]), records
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed records: {exc}") from exc
    return out


@dataclass(frozen=True, slots=True)
class MeterEvent:
    """One accepted meter event, as published."""

    identifier: str
    account_id: str
    livemode: bool
    meter_pk: int
    customer_pk: int
    timestamp: int
    value: Number
    accepted_at: int


def meter_key(meter_pk: int, customer_pk: int) -> bytes:
    return b"m%d:%d" % (meter_pk, customer_pk)


def encode_meter_events(events: Sequence[MeterEvent]) -> bytes:
    """One message of meter events of one partition, in arrival order."""
    return orjson.dumps(
        {
            "v": VERSION,
            "m": [
                [
                    e.identifier,
                    e.account_id,
                    e.livemode,
                    e.meter_pk,
                    e.customer_pk,
                    e.timestamp,
                    e.value if type(e.value) is int else decimal_text(e.value),
                    e.accepted_at,
                ]
                for e in events
            ],
        }
    )


_METER_MARK = b',"m":'


def is_meter_message(raw: bytes) -> bool:
    """A meter-event message (cheap: looks at the header's first key only)."""
    return raw[6:11] == _METER_MARK if raw[:6] == b'{"v":2' else False


def decode_meter_events(raw: bytes) -> list[list[Any]]:
    """The events of a meter-event message, unchecked beyond their shape (the aggregator
    checks each value: ``domain.meters.parse_value``).

    Raises:
        ValueError: not a meter-event message of this version.
    """
    try:
        d = orjson.loads(raw)
        events = d["m"] if type(d) is dict and d.get("v") == VERSION else None
    except (orjson.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"not a meter-event message: {exc}") from exc
    if type(events) is not list or not events:
        raise ValueError("not a meter-event message of version 2 (no events)")
    for event in events:
        if type(event) is not list or len(event) != 8 or type(event[0]) is not str:
            raise ValueError("malformed meter event")
    return events
