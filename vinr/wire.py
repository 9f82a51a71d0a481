"""The usage message on the Kafka topic: one accepted request (a record or a batch).

Key: the subscription item's internal key (so one item's records keep their order in one
partition). Value (orjson)::

    {"v": 1, "id": "mbu_…", "a": account, "l": livemode, "i": item_pk,
     "ps": period_start, "pe": period_end, "at": accepted_unix_s,
     "r": [[timestamp, quantity, is_set], …]}

The message carries the period the ingest validated against, so the aggregator never
recomputes period boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Envelope", "UsageMessage", "decode_envelope", "decode_usage", "encode_usage",
           "encode_usage_fields", "item_key"]

VERSION = 1


@dataclass(frozen=True, slots=True)
class UsageMessage:
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


def encode_usage(msg: UsageMessage) -> bytes:
    return encode_usage_fields(msg.id, msg.account_id, msg.livemode, msg.item_pk,
                               msg.period_start, msg.period_end, msg.accepted_at, msg.records)


def encode_usage_fields(id: str, account_id: str, livemode: bool, item_pk: int,
                        period_start: int, period_end: int, accepted_at: int,
                        records: list[tuple[int, int, bool]]) -> bytes:
    """``encode_usage`` without building the message first (the ingest hot path)."""
    return orjson.dumps({
        "v": VERSION, "id": id, "a": account_id, "l": livemode, "i": item_pk,
        "ps": period_start, "pe": period_end, "at": accepted_at, "r": records,
    })


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded message whose records are left as decoded JSON, unchecked: the aggregator
    validates and collapses them in one pass of its own."""

    id: str
    account_id: str
    livemode: bool
    item_pk: int
    period_start: int
    period_end: int
    accepted_at: int
    records: list[Any]


def decode_envelope(raw: bytes) -> Envelope:
    """Raises ValueError for bytes that are not a usage message of this version."""
    try:
        d = orjson.loads(raw)
        if not isinstance(d, dict) or d.get("v") != VERSION:
            raise ValueError("unknown usage message version")
        records = d["r"]
        if not isinstance(records, list):
            raise ValueError("records are not a list")
        return Envelope(str(d["id"]), str(d["a"]), bool(d["l"]), int(d["i"]), int(d["ps"]),
                        int(d["pe"]), int(d["at"]), records)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"missing or malformed field: {exc}") from exc


def decode_usage(raw: bytes) -> UsageMessage:
    """Raises ValueError for a message this version cannot read."""
    e = decode_envelope(raw)
    try:
        records = [(int(ts), int(q), bool(s)) for ts, q, s in e.records]
    except TypeError as exc:
        raise ValueError(f"malformed records: {exc}") from exc
    return UsageMessage(e.id, e.account_id, e.livemode, e.item_pk, e.period_start,
                        e.period_end, e.accepted_at, records)
