"""The store's two ways of folding a window give identical windows.

A window whose batch delta holds only increments after its latest timestamp is folded in
SQL from the batch alone (``Appended``, guarded on the locked row); every other window is
locked, read and folded by ``domain.fold.fold_ops``. Here the same batches go through the
store as it is and through a store that never takes the SQL fold, on separate items: the
windows, points and dead letters must agree with each other and with ``fold_map`` of the
requests the ledger counted — with late records before a window's latest timestamp,
``set``s, duplicate requests, and windows closed between batches or while a batch waits for
the window's lock.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from aggregator.batch import Appended, PreparedBatch, WindowDelta, WindowKey, appended, prepare
from aggregator.store import BatchResult, PostgresWindowStore
from domain.fold import Op, WindowState, fold_map, fold_ops
from domain.wire import UsageMessage, encode_usage
from infra.settings import Settings

PERIODS = ((1_700_000_000, 1_700_000_100), (1_700_000_100, 1_700_000_200))
_items = itertools.count(7_000_000_000, 100)

Window = tuple[int, int, int | None, int, int, bool]  # total, max, last, last q, records, closed


class FullFoldStore(PostgresWindowStore):
    """The store without its SQL fold: every window is locked, read and folded in Python."""

    async def _write_windows(
        self,
        conn: asyncpg.Connection[Any],
        keys: list[WindowKey],
        windows: dict[WindowKey, WindowDelta],
        created: list[WindowKey],
    ) -> tuple[list[WindowKey], dict[WindowKey, WindowState], set[WindowKey], list[WindowKey]]:
        for delta in windows.values():
            delta.appended = None
        return await super()._write_windows(conn, keys, windows, created)


@dataclass
class Lane:
    """One store, its consumer group and its items (``base`` + item number)."""

    store: PostgresWindowStore
    base: int
    offset: int = 0
    results: list[BatchResult] = field(default_factory=list)

    def batch(self, requests: Sequence[Req]) -> PreparedBatch:
        msgs = []
        for r in requests:
            period = PERIODS[r.period]
            msg = UsageMessage(
                f"{r.id}_{self.base}",  # the ledger is shared: ids of this lane only
                "acct_fastpath",
                False,
                self.base + r.item,
                period[0],
                period[1],
                period[0],
                [(period[0] + ts, q, s) for ts, q, s in r.records],
            )
            msgs.append(SimpleNamespace(offset=self.offset, value=encode_usage(msg)))
            self.offset += 1
        return prepare({0: msgs}, {0: self.offset - len(msgs)})


@dataclass(frozen=True)
class Req:
    id: str
    item: int
    period: int
    records: tuple[tuple[int, int, bool], ...]  # (seconds into the period, quantity, set)


async def lane(pool: asyncpg.Pool, settings: Settings, store_class: type) -> Lane:
    store = store_class(pool, group=f"fast-{uuid.uuid4().hex[:8]}", topic=settings.usage_topic)
    await store.init_offsets({0: 0})
    return Lane(store, next(_items))


async def close_window(pool: asyncpg.Pool, item: int, period: tuple[int, int]) -> None:
    """As the invoicer closes a window (``domain.billing.finalize``)."""
    await pool.execute(
        "INSERT INTO usage_windows (item_pk, period_start, period_end, invoice_id, updated)"
        " VALUES ($1, $2, $3, 'in_fastpath', 0) ON CONFLICT (item_pk, period_start)"
        " DO UPDATE SET invoice_id = EXCLUDED.invoice_id",
        item,
        period[0],
        period[1],
    )


async def state(pool: asyncpg.Pool, base: int) -> tuple[dict[WindowKey, Window], dict, int]:
    """Windows (keyed by item number), points and dead letters of a lane's items."""
    rows = await pool.fetch(
        "SELECT item_pk, period_start, total, max, last_ts, last_quantity, records,"
        " invoice_id IS NOT NULL AS closed FROM usage_windows"
        " WHERE item_pk >= $1 AND item_pk < $1 + 100",
        base,
    )
    windows = {
        (r["item_pk"] - base, r["period_start"]): (
            int(r["total"]),
            int(r["max"]),
            r["last_ts"],
            int(r["last_quantity"]),
            r["records"],
            r["closed"],
        )
        for r in rows
    }
    points = {
        (r["item_pk"] - base, r["ts"]): int(r["quantity"])
        for r in await pool.fetch(
            "SELECT item_pk, ts, quantity FROM usage_points WHERE item_pk >= $1"
            " AND item_pk < $1 + 100",
            base,
        )
    }
    dead = await pool.fetchval(
        "SELECT count(*) FROM usage_dead_letters WHERE item_pk >= $1 AND item_pk < $1 + 100",
        base,
    )
    return windows, points, dead


def truth(
    batches: Sequence[Sequence[Req]], closes: Sequence[set[WindowKey]]
) -> tuple[dict[WindowKey, Window], dict[WindowKey, int], int]:
    """What the ledger and the invoicer make of the batches: the first copy of a request id
    counts; requests for a window closed before their batch are dead letters."""
    seen: set[str] = set()
    records: dict[WindowKey, list[tuple[int, int, bool]]] = {}
    closed: set[WindowKey] = set()
    dead = 0
    for batch, shut in zip(batches, closes, strict=True):
        closed |= shut
        for r in batch:
            if r.id in seen:
                continue
            seen.add(r.id)
            key = (r.item, PERIODS[r.period][0])
            if key in closed:
                dead += 1
                continue
            start = PERIODS[r.period][0]
            records.setdefault(key, []).extend((start + t, q, s) for t, q, s in r.records)
    windows: dict[WindowKey, Window] = {}
    points: dict[WindowKey, int] = {}
    for key in records.keys() | closed:
        usage = fold_map(records.get(key, []))
        last = max(usage) if usage else None
        windows[key] = (
            sum(usage.values()),
            max(usage.values(), default=0),
            last,
            usage[last] if last is not None else 0,
            len(records.get(key, [])),
            key in closed,
        )
        points.update({(key[0], ts): q for ts, q in usage.items()})
    return windows, points, dead


_record = st.tuples(st.integers(0, 3), st.integers(0, 40), st.booleans())


@st.composite
def _batches(draw: st.DrawFn) -> tuple[list[list[Req]], list[set[WindowKey]]]:
    """Batches of requests for 3 items over 2 periods: mostly in order (after what the
    window saw), some reaching back in time, some with sets, some published twice."""
    clock: dict[tuple[int, int], int] = {}
    sent: list[Req] = []
    batches: list[list[Req]] = []
    closes: list[set[WindowKey]] = []
    n = itertools.count()
    for _ in range(draw(st.integers(1, 5))):
        batch: list[Req] = []
        for _ in range(draw(st.integers(1, 6))):
            if sent and draw(st.integers(0, 9)) == 0:  # a client retry, maybe much later
                batch.append(draw(st.sampled_from(sent)))
                continue
            item, period = draw(st.integers(0, 2)), draw(st.integers(0, 1))
            kind = draw(st.sampled_from(["ahead", "ahead", "ahead", "anywhere"]))
            recs = draw(st.lists(_record, min_size=1, max_size=4))
            if kind == "ahead":
                at = clock.get((item, period), -1) + 1
                recs = [(at + dt, q, s and draw(st.integers(0, 4)) == 0) for dt, q, s in recs]
            recs = [(min(t, 99), q, s) for t, q, s in recs]
            clock[(item, period)] = max([clock.get((item, period), -1)] + [t for t, _, _ in recs])
            req = Req(f"mbu_fp{next(n)}", item, period, tuple(recs))
            sent.append(req)
            batch.append(req)
        batches.append(batch)
        shut = set()
        if draw(st.integers(0, 4)) == 0:  # the invoicer closes a window before this batch
            item, period = draw(st.integers(0, 2)), draw(st.integers(0, 1))
            shut.add((item, PERIODS[period][0]))
        closes.append(shut)
    return batches, closes


@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=_batches())
async def test_the_sql_fold_and_the_full_fold_give_identical_windows(
    settings: Settings, pool: asyncpg.Pool, plan: tuple[list[list[Req]], list[set[WindowKey]]]
) -> None:
    batches, closes = plan
    fast = await lane(pool, settings, PostgresWindowStore)
    full = await lane(pool, settings, FullFoldStore)
    try:
        for batch, shut in zip(batches, closes, strict=True):
            for one in (fast, full):
                for item, start in shut:
                    await close_window(pool, one.base + item, (start, start + 100))
                one.results.append(await one.store.apply_batch(one.batch(batch)))
    finally:
        await fast.store.close()
        await full.store.close()
    want_windows, want_points, want_dead = truth(batches, closes)
    got_fast, got_full = await state(pool, fast.base), await state(pool, full.base)
    assert got_fast == got_full
    windows, points, dead = got_fast
    assert windows == want_windows
    assert points == want_points
    assert dead == want_dead
    for a, b in zip(fast.results, full.results, strict=True):
        assert (a.requests, a.records, a.duplicates, a.dead_letters, a.points, a.windows) == (
            b.requests,
            b.records,
            b.duplicates,
            b.dead_letters,
            b.points,
            b.windows,
        )


@given(
    st.dictionaries(
        st.integers(0, 50),
        st.builds(Op, st.booleans(), st.integers(0, 10**20)),
        min_size=1,
        max_size=12,
    ),
    st.dictionaries(st.integers(0, 80), st.integers(0, 10**20), max_size=8),
    st.integers(0, 10),
)
def test_an_appended_summary_is_fold_ops_after_the_latest_point(
    ops: dict[int, Op], stored: dict[int, int], records: int
) -> None:
    """Pure: the figures the SQL fold writes (sum added, greatest max, the delta's last
    point) are ``fold_ops``'s whenever no stored point is at or after the delta's first
    timestamp; a delta with a ``set`` has no summary."""
    summary = appended(ops)
    if any(op.is_set for op in ops.values()):
        assert summary is None
        return
    assert summary is not None
    before = {ts: q for ts, q in stored.items() if ts < summary.first_ts}
    last = max(before, default=None)
    window = WindowState(
        sum(before.values()),
        max(before.values(), default=0),
        last,
        before[last] if last is not None else 0,
        records,
    )
    expected = WindowState(window.total, window.max, window.last_ts, window.last_quantity)
    points, again = fold_ops(expected, ops, before)
    assert not again
    assert points == {ts: op.value for ts, op in ops.items()}
    assert (window.total + summary.total, max(window.max, summary.max)) == (
        expected.total,
        expected.max,
    )
    assert (summary.last_ts, summary.last_quantity) == (expected.last_ts, expected.last_quantity)


@given(
    st.lists(
        st.dictionaries(
            st.integers(0, 30), st.builds(Op, st.just(False), st.integers(0, 9)), min_size=1
        ),
        min_size=1,
        max_size=5,
    )
)
def test_summaries_merged_request_by_request_equal_the_merged_ops(
    requests: list[dict[int, Op]],
) -> None:
    """The batch merges each window's summary as its requests come (in order, or from the
    merged ops when requests overlap in time): the same as summarising the merged ops."""
    from aggregator.batch import window_deltas
    from domain.fold import merge_ops

    reqs = [
        SimpleNamespace(item_pk=1, period_start=0, period_end=100, ops=ops, count=len(ops))
        for ops in requests
    ]
    merged: dict[int, Op] = {}
    for ops in requests:
        merge_ops(merged, ops)
    (delta,) = window_deltas(reqs).values()  # type: ignore[arg-type]
    assert delta.ops == merged
    assert delta.appended == appended(merged)
    assert isinstance(delta.appended, Appended)


async def test_a_window_closed_while_the_batch_waits_for_its_lock_is_dead_lettered(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """The invoicer closes a window the store believes open (it wrote it before) and holds
    its row lock; the batch's in-order increments wait, see the close on the locked row,
    and become a dead letter instead of being folded."""
    one = await lane(pool, settings, PostgresWindowStore)
    first = Req("mbu_fpc1", 0, 0, ((1, 5, False),))
    later = Req("mbu_fpc2", 0, 0, ((2, 7, False),))
    other = Req("mbu_fpc3", 1, 0, ((3, 4, False),))
    try:
        await one.store.apply_batch(one.batch([first, other]))
        item, period = one.base, PERIODS[0]
        async with pool.acquire() as conn:
            closing = conn.transaction()
            await closing.start()
            await conn.execute(
                "UPDATE usage_windows SET invoice_id = 'in_fastpath'"
                " WHERE item_pk = $1 AND period_start = $2",
                item,
                period[0],
            )
            applying = asyncio.create_task(
                one.store.apply_batch(one.batch([later, Req("mbu_fpc4", 1, 0, ((9, 1, False),))]))
            )
            await asyncio.sleep(0.3)
            assert not applying.done()  # waiting for the window's row lock
            await closing.commit()
        result = await applying
    finally:
        await one.store.close()
    assert result.dead_letters == {"period_invoiced": 1}
    windows, points, dead = await state(pool, one.base)
    assert windows[(0, period[0])] == (5, 5, period[0] + 1, 5, 1, True)
    assert windows[(1, period[0])] == (5, 4, period[0] + 9, 1, 2, False)
    assert (0, period[0] + 2) not in points
    assert dead == 1


async def test_windows_unknown_to_a_restarted_store_and_windows_gone_are_folded_once(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A restarted store knows no window: its insert of an existing one does nothing and the
    guarded update folds it. A window it believes in but that was deleted by hand is
    created again and folded in the same transaction."""
    one = await lane(pool, settings, PostgresWindowStore)
    start = PERIODS[0][0]
    try:
        await one.store.apply_batch(
            one.batch(
                [Req("mbu_fpr1", 0, 0, ((1, 5, False),)), Req("mbu_fpr2", 1, 0, ((1, 2, False),))]
            )
        )
        await pool.execute(
            "DELETE FROM usage_windows WHERE item_pk = $1 AND period_start = $2",
            one.base + 1,
            start,
        )
        gone = await one.store.apply_batch(
            one.batch(
                [
                    Req("mbu_fpr3", 0, 0, ((4, 3, False), (6, 1, False))),
                    Req("mbu_fpr4", 1, 0, ((8, 4, False),)),
                ]
            )
        )
    finally:
        await one.store.close()
    assert (gone.windows, gone.records, gone.points) == (2, 3, 3)
    restarted = PostgresWindowStore(pool, group=one.store._group, topic=settings.usage_topic)
    one.store = restarted
    try:
        again = await restarted.apply_batch(one.batch([Req("mbu_fpr5", 0, 0, ((7, 9, False),))]))
    finally:
        await restarted.close()
    assert (again.windows, again.records, again.points) == (1, 1, 1)
    windows, points, _ = await state(pool, one.base)
    assert windows[(0, start)] == (18, 9, start + 7, 9, 4, False)
    assert windows[(1, start)] == (4, 4, start + 8, 4, 1, False)  # the point at 1 is kept
    assert points[(1, start + 1)] == 2
