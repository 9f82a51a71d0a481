"""Shared by the meter-event tests: publishing meter-event messages as the ingest does, an
independent ground truth, and the rows an alert needs.

Messages are published straight to Kafka in the wire format (``domain.wire``): events of
one partition share a message (the partition of each event's ``meter_key``), so the tests
control identifiers (a retry = the same identifier twice), timestamps and values. The
ground truth follows the log: per (meter, identifier) the first copy counts — unless it was
cancelled — and its arrival position is (offset, index in its message).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from domain.clock import now_s
from domain.meters import Number, Stats, fold_events, parse_value
from domain.meterusage import SEQ_INDEX_SPAN
from domain.wire import MeterEvent, encode_meter_events, meter_key
from infra.ids import new_id
from infra.settings import Settings


@dataclass(frozen=True, slots=True)
class Sent:
    partition: int
    offset: int
    index: int
    event: MeterEvent

    @property
    def seq(self) -> int:
        return self.offset * SEQ_INDEX_SPAN + self.index


def event(
    identifier: str,
    meter_pk: int,
    customer_pk: int,
    ts: int,
    value: Number | str,
    *,
    account: str = "",
) -> MeterEvent:
    """An event as published; a ``str`` value is parsed as the ingest would (and sent as
    given when it does not parse: a foreign producer's)."""
    sent: Any = value
    with contextlib.suppress(ValueError):
        sent = parse_value(value)
    return MeterEvent(
        identifier, account or "acct_metertest", False, meter_pk, customer_pk, ts, sent, ts
    )


def _foreign(e: MeterEvent) -> bool:
    """A value no ingest would publish (kept as given by ``event``)."""
    value: Any = e.value
    return isinstance(value, str)


def _encode(batch: list[MeterEvent]) -> bytes:
    if not any(_foreign(e) for e in batch):
        return encode_meter_events(batch)
    d = orjson.loads(encode_meter_events([e for e in batch if not _foreign(e)]))
    for i, e in enumerate(batch):  # the foreign values, in their places
        if _foreign(e):
            d["m"].insert(i, orjson.loads(encode_meter_events([replace(e, value=0)]))["m"][0])
            d["m"][i][6] = e.value
    return orjson.dumps(d)


async def publish_events(
    settings: Settings, events: Iterable[MeterEvent], *, per_message: int = 3
) -> list[Sent]:
    """Publish (acks=all), ``per_message`` events of one partition a message, in order."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=2, acks="all")
    await producer.start()
    try:
        parts = sorted(await producer.partitions_for(settings.usage_topic))
        partitioner = DefaultPartitioner()
        pending: dict[int, list[MeterEvent]] = {}
        sends = []

        async def flush(partition: int) -> None:
            batch = pending.pop(partition, [])
            if batch:
                key = meter_key(batch[0].meter_pk, batch[0].customer_pk)
                future = await producer.send(
                    settings.usage_topic, _encode(batch), key=key, partition=partition
                )
                sends.append((batch, future))

        for e in events:
            partition = partitioner(meter_key(e.meter_pk, e.customer_pk), parts, parts)
            pending.setdefault(partition, []).append(e)
            if len(pending[partition]) >= per_message:
                await flush(partition)
        for partition in list(pending):
            await flush(partition)
        out = []
        for batch, future in sends:
            meta = await future
            out += [Sent(meta.partition, meta.offset, i, e) for i, e in enumerate(batch)]
        return out
    finally:
        await producer.stop()


def counted(sent: Sequence[Sent], cancelled: Iterable[tuple[int, str]] = ()) -> list[Sent]:
    """The events that count: first copy of each (meter, identifier), not cancelled."""
    gone = set(cancelled)
    seen: set[tuple[int, str]] = set()
    out = []
    for s in sorted(sent, key=lambda s: (s.partition, s.offset, s.index)):
        key = (s.event.meter_pk, s.event.identifier)
        if key in seen:
            continue
        seen.add(key)
        if key not in gone:
            out.append(s)
    return out


def truth(events: Sequence[Sent], meter_pk: int, customer_pk: int, start: int, end: int) -> Stats:
    """``fold_events`` over the counted events of a customer in ``[start, end)``."""
    return fold_events(
        (s.event.timestamp, s.event.value, s.seq)
        for s in events
        if s.event.meter_pk == meter_pk
        and s.event.customer_pk == customer_pk
        and start <= s.event.timestamp < end
    )


@dataclass(frozen=True, slots=True)
class Billed:
    """A meter billed to a customer by an active subscription."""

    account_id: str
    meter_pk: int
    meter_id: str
    customer_pk: int
    customer_id: str
    period: tuple[int, int]


async def billed_meter(
    conn: asyncpg.Connection[Any],
    account_id: str,
    period: tuple[int, int],
    *,
    formula: str = "sum",
    customers: int = 1,
    meter_pk: int | None = None,
) -> list[Billed]:
    """A meter (or ``meter_pk``'s) and ``customers`` customers each subscribed to a price
    billing it over ``period``."""
    created = now_s()
    if meter_pk is None:
        meter_pk = await conn.fetchval(
            "INSERT INTO meters (id, account_id, livemode, display_name, event_name, formula,"
            " created, updated) VALUES ($1, $2, false, 'API calls', $3, $4, $5, $5)"
            " RETURNING pk",
            new_id("mtr"),
            account_id,
            new_id("ev"),
            formula,
            created,
        )
    meter_id = await conn.fetchval("SELECT id FROM meters WHERE pk = $1", meter_pk)
    product = new_id("prod")
    await conn.execute(
        "INSERT INTO products (id, account_id, livemode, name, created)"
        " VALUES ($1, $2, false, 'API', $3)",
        product,
        account_id,
        created,
    )
    price = new_id("price")
    await conn.execute(
        "INSERT INTO prices (id, account_id, livemode, product_id, currency, terms, interval,"
        " interval_count, usage_type, created, meter_pk)"
        " VALUES ($1, $2, false, $3, 'EUR', '{}', 'month', 1, 'metered', $4, $5)",
        price,
        account_id,
        product,
        created,
        meter_pk,
    )
    out = []
    for _ in range(customers):
        customer_id = new_id("cust")
        customer_pk = await conn.fetchval(
            "INSERT INTO customers (id, account_id, livemode, created) VALUES ($1, $2, false, $3)"
            " RETURNING pk",
            customer_id,
            account_id,
            created,
        )
        sub = new_id("sub")
        await conn.execute(
            "INSERT INTO subscriptions (id, account_id, livemode, customer_pk, status, currency,"
            " interval, interval_count, anchor, current_period_start, current_period_end,"
            " created) VALUES ($1, $2, false, $3, 'active', 'EUR', 'month', 1, $4, $4, $5, $6)",
            sub,
            account_id,
            customer_pk,
            period[0],
            period[1],
            created,
        )
        await conn.execute(
            "INSERT INTO subscription_items (id, account_id, livemode, subscription_id,"
            " price_id, created) VALUES ($1, $2, false, $3, $4, $5)",
            new_id("si"),
            account_id,
            sub,
            price,
            created,
        )
        out.append(Billed(account_id, meter_pk, meter_id, customer_pk, customer_id, period))
    return out


async def alert(
    conn: asyncpg.Connection[Any],
    account_id: str,
    meter_pk: int,
    gte: int,
    *,
    customer_pk: int | None = None,
    status: str = "active",
) -> str:
    alert_id = new_id("alrt")
    await conn.execute(
        "INSERT INTO billing_alerts (id, account_id, livemode, title, meter_pk, customer_pk,"
        " gte, status, created) VALUES ($1, $2, false, 'Usage', $3, $4, $5, $6, $7)",
        alert_id,
        account_id,
        meter_pk,
        customer_pk,
        gte,
        status,
        now_s(),
    )
    return alert_id
