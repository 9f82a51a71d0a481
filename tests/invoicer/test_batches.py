"""Invoices settled many to a batch: each batch is one transaction, so a batch mixing
succeeding and declining cards pays the one and dunns the other, and a batch whose
connection dies before commit leaves no charge, no event and no state behind — the next
attempt charges each invoice once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from domain.billing import InvoiceRules, collect_invoices
from infra.db import create_pool
from infra.settings import Settings
from invoicer.worker import Invoicer
from tests.support.api import post
from tests.support.billing import (
    DAY,
    FEB,
    T0,
    advance,
    clocked_subscription,
    get,
    invoices,
    price,
    usage,
)

_DECLINED = "pm_card_chargeDeclined"


async def _subscriptions(
    client: httpx.AsyncClient, aggregator: Aggregator, cards: list[str]
) -> list[dict[str, Any]]:
    """One subscription per card, each owing January's 10 × 1.00 on it."""
    p = await price(client, unitAmount=100)
    subs = []
    for card in cards:
        sub = await clocked_subscription(client, [{"price": p["id"]}], payment_method=card)
        await usage(client, sub["items"]["data"][0]["id"], 10, T0 + 60)
        subs.append(sub)
    await aggregator.drain()
    return subs


async def _trail(pool: asyncpg.Pool, invoice_id: str) -> list[str]:
    """The invoice's events, in outbox order."""
    return [t for t, _ in await _events(pool, invoice_id)]


async def _events(pool: asyncpg.Pool, invoice_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch(
        "SELECT type, data FROM events WHERE data->>'object' = 'invoice' AND data->>'id' = $1"
        " ORDER BY seq",
        invoice_id,
    )
    return [(r["type"], r["data"]) for r in rows]


async def _charges(pool: asyncpg.Pool, invoice_id: str) -> list[tuple[int, str]]:
    rows = await pool.fetch(
        "SELECT attempt, status FROM charges WHERE invoice_id = $1 ORDER BY attempt", invoice_id
    )
    return [(r["attempt"], r["status"]) for r in rows]


async def test_a_batch_of_succeeding_and_declining_cards_settles_each_on_its_own(
    client: httpx.AsyncClient, aggregator: Aggregator, invoicer: Invoicer, pool: asyncpg.Pool
) -> None:
    cards = ["pm_card_visa", _DECLINED, "pm_card_visa", _DECLINED, "pm_card_mastercard"]
    subs = await _subscriptions(client, aggregator, cards)
    for sub in subs:
        await advance(client, sub, FEB)
    await invoicer.tick()  # one tick: the five invoices close, finalize and are charged together

    for sub, card in zip(subs, cards, strict=True):
        [invoice] = await invoices(client, sub["id"])
        status = (await get(client, f"/v1/subscriptions/{sub['id']}"))["status"]
        if card == _DECLINED:
            assert (invoice["status"], invoice["attemptCount"], status) == ("open", 1, "past_due")
            assert invoice["nextPaymentAttempt"] == FEB + 3 * DAY
            assert await _charges(pool, invoice["id"]) == [(1, "failed")]
            assert await _trail(pool, invoice["id"]) == [
                "invoice.created",
                "invoice.finalized",
                "invoice.payment_failed",
            ]
        else:
            assert (invoice["status"], invoice["amountPaid"], status) == ("paid", 1000, "active")
            assert await _charges(pool, invoice["id"]) == [(1, "succeeded")]
            assert await _trail(pool, invoice["id"]) == [
                "invoice.created",
                "invoice.finalized",
                "invoice.paid",
                "invoice.payment_succeeded",
            ]
            _, finalized, paid, succeeded = [d for _, d in await _events(pool, invoice["id"])]
            assert (finalized["status"], paid["status"]) == ("open", "paid")
            assert succeeded == paid  # one rendering, sent once, stored for both


async def _wait_for_lock(pool: asyncpg.Pool, pid: int) -> None:
    """Until the backend ``pid`` waits on a lock."""
    query = "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1"
    for _ in range(3_000):
        if await pool.fetchval(query, pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"backend {pid} never waited on the lock")


async def test_a_batch_killed_before_commit_charges_nothing_and_the_retry_charges_once(
    client: httpx.AsyncClient,
    aggregator: Aggregator,
    invoicer: Invoicer,
    pool: asyncpg.Pool,
    settings: Settings,
) -> None:
    subs = await _subscriptions(client, aggregator, [_DECLINED, _DECLINED])
    for sub in subs:
        await advance(client, sub, FEB)
    await invoicer.tick()  # attempt 1 declined on both
    recovering = subs[0]
    await post(
        client, f"/v1/customers/{recovering['customer']}", {"paymentMethod": "4242424242424242"}
    )
    for sub in subs:
        await advance(client, sub, FEB + 3 * DAY)  # attempt 2 due on both
    ids = [(await invoices(client, sub["id"]))[0]["id"] for sub in subs]
    before = {i: await _trail(pool, i) for i in ids}

    # The batch is stopped where it queues its events (after its charges are written) by a
    # lock on the events table, and its connection is killed there.
    victim = await create_pool(settings, min_size=1, max_size=1)
    try:
        async with pool.acquire() as holder, holder.transaction():
            await holder.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            async with victim.acquire() as conn:
                pid = await conn.fetchval("SELECT pg_backend_pid()")
                batch = asyncio.create_task(
                    collect_invoices(conn, ids, InvoiceRules.from_settings(settings))
                )
                await _wait_for_lock(pool, pid)
                written = await holder.fetchval(
                    "SELECT count(*) FROM charges WHERE invoice_id = ANY($1::text[])"
                    " AND attempt = 2",
                    ids,
                )
                assert written == 0  # not committed: invisible outside the batch
                assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
                with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError)):
                    await batch
    finally:
        await victim.close()

    for i in ids:  # nothing of the killed batch remains
        assert await _charges(pool, i) == [(1, "failed")]
        assert await _trail(pool, i) == before[i]
        assert (await get(client, f"/v1/invoices/{i}"))["attemptCount"] == 1

    await invoicer.tick()  # the attempt again: once per invoice
    paid, declined = ids
    assert await _charges(pool, paid) == [(1, "failed"), (2, "succeeded")]
    assert await _charges(pool, declined) == [(1, "failed"), (2, "failed")]
    assert await _trail(pool, paid) == [*before[paid], "invoice.paid", "invoice.payment_succeeded"]
    assert await _trail(pool, declined) == [*before[declined], "invoice.payment_failed"]
    assert (await get(client, f"/v1/invoices/{paid}"))["status"] == "paid"
    assert (await get(client, f"/v1/subscriptions/{recovering['id']}"))["status"] == "active"
    assert (await get(client, f"/v1/subscriptions/{subs[1]['id']}"))["status"] == "past_due"
