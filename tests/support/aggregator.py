"""Shared by the aggregator tests: publishing usage messages and an independent ground truth.

Messages are published straight to Kafka in the ingest's wire format (``domain.wire``), so
the tests control ids (client retries = the same id twice), periods and timestamps. The
ground truth follows the log: per partition in offset order, the first copy of each request
id counts, and each window's map is ``fold_map`` of its records in that order.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

import asyncpg
from aiokafka import AIOKafkaProducer

from domain.fold import fold_map
from domain.wire import UsageMessage, encode_usage, item_key
from infra import devenv
from infra.settings import Settings

PERIOD = (1_700_000_000, 1_700_000_000 + 30 * 86_400)

Window = tuple[int, int, int | None, int, int]  # total, max, last_ts, last_quantity, records


def message(
    request_id: str,
    item: int,
    records: list[tuple[int, int, bool]],
    *,
    period: tuple[int, int] = PERIOD,
    account: str = "acct_aggtest",
) -> UsageMessage:
    return UsageMessage(request_id, account, False, item, period[0], period[1], period[0], records)


@dataclass
class Published:
    """What went onto the topic, with offsets, for the ground truth."""

    entries: list[tuple[int, int, UsageMessage]] = field(default_factory=list)  # (p, off, msg)

    def truth(self, below: dict[int, int] | None = None) -> dict[tuple[int, int], Window]:
        """Windows as the log says (optionally only messages below ``below[partition]``)."""
        seen: set[str] = set()
        records: dict[tuple[int, int], list[tuple[int, int, bool]]] = {}
        for partition, offset, msg in sorted(self.entries, key=lambda e: (e[0], e[1])):
            if below is not None and offset >= below.get(partition, 0):
                continue
            if msg.id in seen:
                continue
            seen.add(msg.id)
            records.setdefault((msg.item_pk, msg.period_start), []).extend(msg.records)
        out: dict[tuple[int, int], Window] = {}
        for key, recs in records.items():
            usage = fold_map(recs)
            last = max(usage) if usage else None
            out[key] = (
                sum(usage.values()),
                max(usage.values(), default=0),
                last,
                usage[last] if last is not None else 0,
                len(recs),
            )
        return out


async def publish(
    settings: Settings,
    messages: Iterable[UsageMessage],
    published: Published | None = None,
    *,
    raw: bool = False,
) -> Published:
    """Publish (acks=all) and record each message's partition and offset."""
    out = published if published is not None else Published()
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        linger_ms=2,
        max_request_size=4 * 1024 * 1024,
        acks="all",
    )
    await producer.start()
    try:
        pending = []
        for msg in messages:
            value = encode_usage(msg)
            pending.append(
                (msg, await producer.send(settings.usage_topic, value, key=item_key(msg.item_pk)))
            )
        for msg, future in pending:
            meta = await future
            out.entries.append((meta.partition, meta.offset, msg))
    finally:
        await producer.stop()
    return out


async def windows(pool: asyncpg.Pool) -> dict[tuple[int, int], Window]:
    rows = await pool.fetch(
        "SELECT item_pk, period_start, total, max, last_ts, last_quantity,"
        " records FROM usage_windows WHERE records > 0"
    )
    return {
        (r["item_pk"], r["period_start"]): (
            int(r["total"]),
            int(r["max"]),
            r["last_ts"],
            int(r["last_quantity"]),
            r["records"],
        )
        for r in rows
    }


async def stored_offsets(pool: asyncpg.Pool, settings: Settings) -> dict[int, int]:
    rows = await pool.fetch(
        "SELECT partition, next_offset FROM consumer_offsets"
        " WHERE consumer_group = $1 AND topic = $2",
        settings.consumer_group,
        settings.usage_topic,
    )
    return {r["partition"]: r["next_offset"] for r in rows}


def role_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a ``python -m vinr.cli …`` subprocess in this isolated env."""
    return devenv.role_env(settings, **({"VINR_AGGREGATOR_POLL_MS": "50"} | extra))


CLI = [sys.executable, "-m", "vinr.cli"]
