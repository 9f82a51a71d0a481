"""Meter events through the real aggregator: ledger, buckets, cancels, fencing, invoiced
boundaries and alerts, against the dev broker and Postgres.

Every check compares what Postgres answers (``domain.meterusage.range_stats``, the ledger
rows) with an independent ground truth folded from what was published
(``tests.support.meters``).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from aggregator.worker import Aggregator
from domain.accounts import create_account
from domain.meters import BUCKET_S, FORMULAS, Stats, formula_value
from domain.meterusage import RangeAsk, cancel_event, range_stats
from infra.db import create_pool
from infra.devenv import isolated_settings
from infra.settings import Settings
from tests.support.aggregator import stored_offsets
from tests.support.meters import (
    Sent,
    alert,
    billed_meter,
    counted,
    event,
    publish_events,
    truth,
)

BASE = 1_700_000_040  # on a minute boundary
_meters = itertools.count(1_000)


@pytest.fixture(scope="module")
async def env(broker: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool, Aggregator]]:
    async with isolated_settings(
        broker, label="aggm", aggregator_max_records=7, aggregator_poll_ms=20
    ) as settings:
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            async with Aggregator(settings, pool=pool, retention_s=None) as agg:
                yield settings, pool, agg
        finally:
            await pool.close()


def meter() -> int:
    """A meter key of its own for each test (and each example): tests share one database."""
    return next(_meters)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def stats(pool: asyncpg.Pool, meter_pk: int, customer_pk: int, start: int, end: int) -> Stats:
    (s,) = await range_stats(pool, [RangeAsk(meter_pk, customer_pk, start, end)])
    return s


async def cancel(pool: asyncpg.Pool, meter_pk: int, identifier: str) -> str:
    async with pool.acquire() as conn, conn.transaction():
        return await cancel_event(conn, meter_pk, identifier, BASE)


def same(got: Stats, want: Stats) -> None:
    """Equal stats (values compared exactly), and every formula's figure equal."""
    assert (got.events, got.total, got.max, got.last_ts, got.last_value) == (
        want.events,
        want.total,
        want.max,
        want.last_ts,
        want.last_value,
    )
    if want.events:
        assert got.last_seq == want.last_seq
    for f in FORMULAS:
        assert formula_value(f, got) == formula_value(f, want)


_value = st.one_of(
    st.integers(0, 1000),
    st.builds(
        lambda i, f, places: f"{i}.{f:0{places}d}",
        st.integers(0, 99),
        st.integers(0, 999),
        st.just(3),
    ),
)
_events = st.lists(
    st.tuples(
        st.integers(0, 2),  # customer
        st.one_of(  # timestamps repeat, at minute edges too
            st.sampled_from([0, 1, 30, 59, 60, 61, 119, 120, 179]), st.integers(0, 4 * BUCKET_S)
        ),
        _value,
        st.sampled_from(["once", "once", "once", "twice", "cancel_before", "cancel_after"]),
    ),
    min_size=1,
    max_size=40,
)
_ranges = st.lists(
    st.tuples(
        st.integers(-BUCKET_S, 5 * BUCKET_S),
        st.integers(0, 5 * BUCKET_S),
        st.booleans(),  # aligned on minutes
    ),
    min_size=1,
    max_size=6,
)


@hsettings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=_events, ranges=_ranges, per_message=st.integers(1, 5))
async def test_range_stats_equal_the_folded_events(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
    raw: list[tuple[int, int, Any, str]],
    ranges: list[tuple[int, int, bool]],
    per_message: int,
) -> None:
    """Random events (decimals, equal timestamps, several customers, retries, cancels
    before and after their event) folded by the aggregator over several batches: every
    range, on minute boundaries or not, equals ``fold_events`` of the counted events."""
    settings, pool, agg = env
    m = meter()
    customers = [m * 10 + c for c in range(3)]
    events = [
        event(f"ev{i}", m, customers[c], BASE + t, _parse(v)) for i, (c, t, v, _) in enumerate(raw)
    ]
    gone = set()
    for e, (*_, fate) in zip(events, raw, strict=True):
        if fate == "cancel_before":
            assert await cancel(pool, m, e.identifier) == "pending"
            gone.add((m, e.identifier))
    retries = [e for e, r in zip(events, raw, strict=True) if r[3] == "twice"]
    sent: list[Sent] = []
    third = -(-len(events) // 3)
    for part in (events[:third], events[third : 2 * third], events[2 * third :] + retries):
        sent += await publish_events(settings, part, per_message=per_message)
        await agg.drain()  # batches of up to 7 messages: several per part
    for e, (*_, fate) in zip(events, raw, strict=True):
        if fate == "cancel_after":
            assert await cancel(pool, m, e.identifier) == "complete"
            gone.add((m, e.identifier))
    kept = counted(sent, gone)
    asks = [(BASE - BUCKET_S, BASE + 6 * BUCKET_S)]
    for a, b, aligned in ranges:
        lo, hi = min(a, b), max(a, b)
        if aligned:
            lo, hi = lo - lo % BUCKET_S, hi - hi % BUCKET_S
        asks.append((BASE + lo, BASE + hi))
    for customer in customers:
        for lo, hi in asks:
            same(await stats(pool, m, customer, lo, hi), truth(kept, m, customer, lo, hi))
    rows = await pool.fetchval("SELECT count(*) FROM meter_events WHERE meter_pk = $1", m)
    assert rows == len(events)


def _parse(v: Any) -> int | Decimal:
    from domain.meters import parse_value

    return parse_value(v)


async def test_cancel_after_its_event_rebuilds_max_and_last(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
) -> None:
    settings, pool, agg = env
    m, c = meter(), 1
    t = BASE + 5
    sent = await publish_events(
        settings,
        [
            event("a", m, c, t, 7),
            event("b", m, c, t + 10, 50),  # the max
            event("c", m, c, t + 20, 3),  # the last
            event("d", m, c, t + 20, 4),  # ... at one timestamp, later in arrival: the last
        ],
        per_message=2,
    )
    await agg.drain()
    window = (BASE, BASE + BUCKET_S)
    before = await stats(pool, m, c, *window)
    assert (before.total, before.events, before.max, before.last_value) == (64, 4, 50, 4)
    assert await cancel(pool, m, "b") == "complete"
    assert await cancel(pool, m, "d") == "complete"
    assert await cancel(pool, m, "d") == "complete"  # idempotent
    after = await stats(pool, m, c, *window)
    same(after, truth(counted(sent, {(m, "b"), (m, "d")}), m, c, *window))
    assert (after.total, after.events, after.max, after.last_value) == (10, 2, 7, 3)
    # the bucket itself was rebuilt (the summary above reads buckets only)
    bucket = await pool.fetchrow(
        "SELECT total, events, max, last_ts, last_value FROM meter_buckets WHERE meter_pk = $1", m
    )
    assert tuple(bucket) == (10, 2, 7, t + 20, 3)
    # later events still add to the rebuilt bucket
    await publish_events(settings, [event("e", m, c, t + 30, 9)])
    await agg.drain()
    last = await stats(pool, m, c, *window)
    assert (last.total, last.events, last.max, last.last_value) == (19, 3, 9, 9)


async def test_last_at_an_equal_timestamp_is_the_later_arrival(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
) -> None:
    """Across batches: the stored bucket's latest event loses to a later one at its
    timestamp, and wins over a later one before it."""
    settings, pool, agg = env
    m, c = meter(), 6
    window = (BASE, BASE + BUCKET_S)
    for identifier, ts, value, last in (
        ("p", BASE + 9, 1, 1),
        ("q", BASE + 9, 2, 2),  # same timestamp, later: wins
        ("r", BASE + 8, 3, 2),  # earlier timestamp: the last stays
        ("s", BASE + 9, 4, 4),
    ):
        await publish_events(settings, [event(identifier, m, c, ts, value)])
        await agg.drain()
        assert (await stats(pool, m, c, *window)).last_value == last


async def test_cancel_before_its_event_never_counts(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
) -> None:
    settings, pool, agg = env
    m, c = meter(), 2
    assert await cancel(pool, m, "early") == "pending"
    filled = metric("vinr_aggregator_meter_events_total", outcome="after_cancel")
    await publish_events(
        settings, [event("early", m, c, BASE + 1, "2.5"), event("other", m, c, BASE + 2, 1)]
    )
    await agg.drain()
    s = await stats(pool, m, c, BASE, BASE + BUCKET_S)
    assert (s.total, s.events) == (1, 1)
    row = await pool.fetchrow(
        "SELECT customer_pk, ts, value, cancelled_at, rejected, kafka_offset FROM meter_events"
        " WHERE meter_pk = $1 AND identifier = 'early'",
        m,
    )
    assert (row["customer_pk"], row["ts"], row["value"], row["cancelled_at"]) == (
        c,
        BASE + 1,
        Decimal("2.5"),
        BASE,
    )
    assert row["rejected"] is None and row["kafka_offset"] is not None
    assert metric("vinr_aggregator_meter_events_total", outcome="after_cancel") == filled + 1
    # the event again (a retry): still never counted, the row keeps its details
    await publish_events(settings, [event("early", m, c, BASE + 1, "2.5")])
    await agg.drain()
    s = await stats(pool, m, c, BASE, BASE + BUCKET_S)
    assert (s.total, s.events) == (1, 1)


async def test_an_identifier_published_twice_counts_once(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
) -> None:
    """The ledger is the truth when Redis forgot: the same identifier in another message,
    another batch, or the same message counts once."""
    settings, pool, agg = env
    m, c = meter(), 3
    duplicates = metric("vinr_aggregator_meter_events_total", outcome="duplicate")
    first = event("dup", m, c, BASE + 3, 5)
    await publish_events(settings, [first, first, event("x", m, c, BASE + 4, 1)], per_message=3)
    await agg.drain()
    await publish_events(settings, [first])  # a later batch
    await agg.drain()
    await publish_events(settings, [event("y", m, c, BASE + 5, 1), first], per_message=1)
    await agg.drain()
    s = await stats(pool, m, c, BASE, BASE + BUCKET_S)
    assert (s.total, s.events) == (7, 3)
    assert metric("vinr_aggregator_meter_events_total", outcome="duplicate") == duplicates + 3
    assert await pool.fetchval("SELECT count(*) FROM meter_events WHERE meter_pk = $1", m) == 3


async def test_a_zombie_batch_of_meter_events_is_fenced(broker: str) -> None:
    async with isolated_settings(broker, label="aggmz", aggregator_poll_ms=20) as settings:
        pool = await create_pool(settings, min_size=1, max_size=4)
        try:
            m = meter()
            events = [event(f"z{i}", m, 1 + i % 5, BASE + i, i) for i in range(40)]
            sent = await publish_events(settings, events)
            async with (
                Aggregator(settings, pool=pool, retention_s=None) as zombie,
                Aggregator(settings, pool=pool, retention_s=None) as live,
            ):
                await live.drain()
                committed = await stored_offsets(pool, settings)
                # a batch of meter events alone advances the stored offsets to the log end
                ends: dict[int, int] = {}
                for x in sent:
                    ends[x.partition] = max(ends.get(x.partition, 0), x.offset + 1)
                assert {p: o for p, o in committed.items() if o} == ends
                buckets = await pool.fetch("SELECT * FROM meter_buckets ORDER BY 1, 2, 3")
                await pool.execute("DELETE FROM meter_events")  # a zombie write would show
                await zombie.step(1_000)  # its batch is refused ...
                assert zombie.meter_events == 0
                assert await pool.fetchval("SELECT count(*) FROM meter_events") == 0
                assert await pool.fetch("SELECT * FROM meter_buckets ORDER BY 1, 2, 3") == buckets
                assert await stored_offsets(pool, settings) == committed
            for customer in range(1, 6):
                want = truth(counted(sent), m, customer, BASE, BASE + 60)
                same(await stats(pool, m, customer, BASE, BASE + 60), want)
        finally:
            await pool.close()


async def test_events_before_the_invoiced_boundary_are_rejected(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
) -> None:
    settings, pool, agg = env
    m, c = meter(), 4
    await pool.execute(
        "INSERT INTO meter_closes (meter_pk, customer_pk, closing_until, closed_until, updated)"
        " VALUES ($1, $2, $3, $3, 0)",
        m,
        c,
        BASE + 30,
    )
    await publish_events(
        settings,
        [
            event("late", m, c, BASE + 29, 100),
            event("on", m, c, BASE + 30, 1),
            event("other", m, c + 1, BASE + 1, 2),  # another customer: no boundary
        ],
    )
    await agg.drain()
    assert (await stats(pool, m, c, BASE, BASE + BUCKET_S)).total == 1
    assert (await stats(pool, m, c + 1, BASE, BASE + BUCKET_S)).total == 2
    rows = dict(
        await pool.fetch("SELECT identifier, rejected FROM meter_events WHERE meter_pk = $1", m)
    )
    assert rows == {"late": "period_invoiced", "on": None, "other": None}


async def test_malformed_events_are_refused_not_fatal(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
) -> None:
    settings, pool, agg = env
    m, c = meter(), 5
    await publish_events(
        settings,
        [
            event("neg", m, c, BASE + 1, -1),
            event("text", m, c, BASE + 1, "1e3"),
            event("ok", m, c, BASE + 2, "0.000000000001"),
            event("nul\x00", m, c, BASE + 2, 1),  # cannot be stored: refused, not fatal
        ],
        per_message=4,
    )
    await agg.drain()
    s = await stats(pool, m, c, BASE, BASE + BUCKET_S)
    assert (s.total, s.events) == (Decimal("0.000000000001"), 1)
    await publish_events(settings, [event("after", m, c, BASE + 3, 1)])
    await agg.drain()  # the consumer went on
    assert (await stats(pool, m, c, BASE, BASE + BUCKET_S)).events == 2
    rows = dict(
        await pool.fetch("SELECT identifier, rejected FROM meter_events WHERE meter_pk = $1", m)
    )
    assert rows == {"neg": "invalid_event", "text": "invalid_event", "ok": None, "after": None}


async def test_an_alert_fires_once_per_customer_at_its_threshold(
    env: tuple[Settings, asyncpg.Pool, Aggregator],
) -> None:
    settings, pool, agg = env
    period = (BASE - 3_600, BASE + 86_400)
    async with pool.acquire() as conn:
        account, _, _ = await create_account(conn, "alerts")
        a, b, other = await billed_meter(conn, account, period, customers=3)
        everyone = await alert(conn, account, a.meter_pk, 10)
        only_b = await alert(conn, account, a.meter_pk, 3, customer_pk=b.customer_pk)
        await alert(conn, account, a.meter_pk, 1, status="inactive")
    m = a.meter_pk
    n = itertools.count()

    async def send(customer: int, *values: int | str) -> None:
        await publish_events(
            settings,
            [event(f"al{next(n)}", m, customer, BASE + next(n) % 50, v) for v in values],
            per_message=1,
        )
        await agg.drain()

    async def fired() -> list[tuple[str, str, Any, str]]:
        rows = await pool.fetch(
            "SELECT e.data FROM events e WHERE e.type = 'billing.alert.triggered'"
            " AND e.account_id = $1 ORDER BY e.seq",
            account,
        )
        out = []
        for r in rows:
            d = r["data"]
            out.append((d["alert"]["id"], d["customer"], d["value"], d["valueDecimal"]))
        return sorted(out)

    await send(a.customer_pk, 4, 5)  # 9: below 10
    await send(b.customer_pk, 2)  # 2: below b's 3
    assert await fired() == []
    await send(b.customer_pk, "1.5")  # 3.5 ≥ 3 (b's alert), < 10
    assert await fired() == [(only_b, b.customer_id, 3.5, "3.5")]
    await send(a.customer_pk, 1)  # 10 ≥ 10
    await send(a.customer_pk, 1, 1, 1)  # again over: no second event
    await send(b.customer_pk, 10)  # 13.5: everyone's alert for b, b's own not again
    want = sorted(
        [
            (only_b, b.customer_id, 3.5, "3.5"),
            (everyone, a.customer_id, 10, "10"),
            (everyone, b.customer_id, 13.5, "13.5"),
        ]
    )
    assert await fired() == want
    # events outside the customer's current period do not count towards it
    await publish_events(settings, [event("old", m, other.customer_pk, period[0] - 10, 50)])
    await agg.drain()
    assert await fired() == want
    triggers = await pool.fetchval(
        "SELECT count(*) FROM billing_alert_triggers t JOIN billing_alerts a ON a.pk = t.alert_pk"
        " WHERE a.account_id = $1",
        account,
    )
    assert triggers == 3
    data = await pool.fetchval(
        "SELECT data FROM events WHERE type = 'billing.alert.triggered' AND account_id = $1"
        " LIMIT 1",
        account,
    )
    assert data["object"] == "billing.alert_triggered" and data["livemode"] is False
    assert data["alert"]["object"] == "billing.alert"
    assert data["alert"]["usageThreshold"]["meter"] == a.meter_id
