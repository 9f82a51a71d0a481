"""The outbox on real Postgres: events and their deliveries are copied in the caller's
transaction, each event delivered to exactly the endpoints of its account and mode that are
not disabled and enable its type (or ``*``), due at the server's clock; a rolled-back write
leaves neither; queueing a delivery again finds the id the outbox gave it."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from domain.events import Event, emit_events
from domain.store.webhooks import requeue_deliveries, subscribed_endpoints
from domain.tenant import Tenant

_TYPES = ("invoice.created", "invoice.paid", "customer.subscription.updated")

# The subscription rule as SQL, the oracle the outbox's matching is checked against.
_EXPECTED = """
SELECT e.id AS event_id, w.id AS endpoint_id FROM events e JOIN webhook_endpoints w
  ON w.account_id = e.account_id AND w.livemode = e.livemode AND w.status <> 'disabled'
 AND (e.type = ANY(w.enabled_events) OR '*' = ANY(w.enabled_events))
WHERE e.id = ANY($1::text[])
"""


@pytest.fixture(autouse=True)
async def _no_pending_left(pool: asyncpg.Pool) -> AsyncIterator[None]:
    """The session's database is shared: deliveries these tests leave pending would be
    claimed by other tests' dispatchers (their endpoints never answer), so they are
    canceled afterwards."""
    yield
    await pool.execute(
        "UPDATE webhook_deliveries d SET status = 'canceled' FROM webhook_endpoints w"
        " WHERE w.id = d.endpoint_id AND w.account_id LIKE 'acct_outbox%'"
        " AND d.status = 'pending'"
    )


async def _accounts(pool: asyncpg.Pool, n: int) -> list[str]:
    ids = [f"acct_outbox{uuid.uuid4().hex[:10]}" for _ in range(n)]
    await pool.executemany(
        "INSERT INTO accounts (id, name, created) VALUES ($1, 'outbox', 1)", [(i,) for i in ids]
    )
    return ids


async def _endpoint(
    pool: asyncpg.Pool, account: str, livemode: bool, enabled: list[str], status: str
) -> str:
    endpoint_id = f"we_{uuid.uuid4().hex[:16]}"
    await pool.execute(
        "INSERT INTO webhook_endpoints (id, account_id, livemode, url, enabled_events, secret,"
        " status, created) VALUES ($1, $2, $3, 'https://hooks.test/x', $4, 'whsec_x', $5, 1)",
        endpoint_id,
        account,
        livemode,
        enabled,
        status,
    )
    return endpoint_id


async def _deliveries(pool: asyncpg.Pool, event_ids: list[str]) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM webhook_deliveries WHERE event_id = ANY($1::text[])", event_ids
        )
    )


async def test_each_event_is_delivered_to_exactly_the_endpoints_the_rule_picks(
    pool: asyncpg.Pool,
) -> None:
    accounts = await _accounts(pool, 3)
    subscriptions = (["*"], ["invoice.paid"], ["invoice.created", "invoice.paid"], ["x.y"])
    for account, livemode, enabled, status in itertools.product(
        accounts[:2], (False, True), subscriptions, ("enabled", "failing", "disabled")
    ):
        await _endpoint(pool, account, livemode, enabled, status)
    # Events of every (account, mode, type), the third account without any endpoint; some
    # events share one payload, as an invoice's paid and payment_succeeded do.
    shared = {"object": "invoice", "id": "in_shared", "total": 100}
    events = [
        Event(a, m, t, shared if t == "invoice.paid" else {"object": "x", "n": k})
        for k, (a, m, t) in enumerate(itertools.product(accounts, (False, True), _TYPES))
    ]
    async with pool.acquire() as conn:
        before = await conn.fetchval("SELECT extract(epoch from clock_timestamp())")
        async with conn.transaction():
            ids = await emit_events(conn, events)
        after = await conn.fetchval("SELECT extract(epoch from clock_timestamp())")

    stored = await pool.fetch(
        "SELECT id, account_id, livemode, type, data FROM events WHERE id = ANY($1::text[])"
        " ORDER BY seq",
        ids,
    )
    assert [(r["id"], r["account_id"], r["livemode"], r["type"], r["data"]) for r in stored] == [
        (i, e.account_id, e.livemode, e.type, e.data) for i, e in zip(ids, events, strict=True)
    ]
    got = await _deliveries(pool, ids)
    expected = {(r["event_id"], r["endpoint_id"]) for r in await pool.fetch(_EXPECTED, ids)}
    assert {(d["event_id"], d["endpoint_id"]) for d in got} == expected
    assert (
        len(got)
        == len(expected)
        == 2
        * 2
        * (  # accounts with endpoints × modes ×
            2 * 3  # the "*" endpoints (enabled, failing) take all 3 types
            + 2 * 1  # the invoice.paid ones take 1
            + 2 * 2  # the invoice.created + invoice.paid ones take 2
        )
    )
    for d in got:
        assert d["id"] == await pool.fetchval(
            "SELECT 'whd_' || md5($1 || $2)", d["event_id"], d["endpoint_id"]
        )
        assert (d["status"], d["attempts"], d["first_attempt_at"]) == ("pending", 0, None)
        assert before <= d["next_attempt_at"] <= after  # due now, by the server's clock


async def test_a_rolled_back_outbox_write_leaves_no_event_and_no_delivery(
    pool: asyncpg.Pool,
) -> None:
    [account] = await _accounts(pool, 1)
    await _endpoint(pool, account, False, ["*"], "enabled")
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                ids = await emit_events(
                    conn, [Event(account, False, t, {"object": "x"}) for t in _TYPES]
                )
                assert len(await _deliveries(pool, ids)) == 0  # not committed: invisible
                assert len(await conn.fetch(_EXPECTED, ids)) == 3
                raise RuntimeError("the state change fails after its events")
    assert await pool.fetchval("SELECT count(*) FROM events WHERE id = ANY($1::text[])", ids) == 0
    assert await _deliveries(pool, ids) == []


async def test_queueing_a_delivery_again_keeps_the_id_the_outbox_gave_it(
    pool: asyncpg.Pool,
) -> None:
    [account] = await _accounts(pool, 1)
    paid = await _endpoint(pool, account, False, ["invoice.paid"], "enabled")
    everything = await _endpoint(pool, account, False, ["*"], "failing")
    await _endpoint(pool, account, False, ["*"], "disabled")
    await _endpoint(pool, account, True, ["*"], "enabled")
    async with pool.acquire() as conn, conn.transaction():
        [event_id] = await emit_events(conn, [Event(account, False, "invoice.paid", {"o": 1})])
    first = {d["endpoint_id"]: d["id"] for d in await _deliveries(pool, [event_id])}
    assert set(first) == {paid, everything}

    targets = await subscribed_endpoints(pool, Tenant(account, False), "invoice.paid")
    assert sorted(targets) == sorted([paid, everything])
    assert await subscribed_endpoints(pool, Tenant(account, False), "invoice.created") == [
        everything
    ]
    async with pool.acquire() as conn, conn.transaction():
        await requeue_deliveries(conn, event_id, targets, 2)
    again = {d["endpoint_id"]: d["id"] for d in await _deliveries(pool, [event_id])}
    assert again == first
