"""Test clocks: a clock is ``advancing`` while anything it made due is still to do, and
``ready`` once the invoicer (or the control plane, for a subscription advanced within a
request) has done it all. Moving a clock, and "Advance billing period" (the control
plane's test helper and the Dashboard's button), are here so both run one rule."""

from __future__ import annotations

from typing import Any

import asyncpg

from domain.clock import subscription_now
from domain.events import emit_event
from domain.itemmeta import Changes
from domain.objects import render_test_clock
from domain.periods import period_containing
from domain.store import subscriptions as store
from domain.store.meters import bump_meter_epoch
from domain.store.owned import found
from domain.tenant import Tenant
from infra.errors import InvalidRequest, NotFound
from infra.ids import new_id

__all__ = ["advance_period", "move_clock", "require_sandbox", "settle_clocks"]

# A clock is "advancing" while anything it made due is still to do (see advance_clock).
_SETTLE_CLOCKS = """
UPDATE test_clocks c SET status = 'ready'
WHERE c.status = 'advancing' AND ($1::text[] IS NULL OR c.id = ANY($1::text[]))
  AND NOT EXISTS (
      SELECT 1 FROM subscriptions s WHERE s.test_clock_id = c.id
        AND (s.final_invoice_pending OR (s.status IN ('active', 'past_due', 'unpaid')
                                          AND s.current_period_end <= c.frozen_time)))
  AND NOT EXISTS (
      SELECT 1 FROM invoices i JOIN subscriptions s ON s.id = i.subscription_id
      WHERE s.test_clock_id = c.id
        AND ((i.status = 'draft' AND i.finalize_at <= c.frozen_time)
             OR (i.status = 'open' AND i.next_payment_attempt <= c.frozen_time)))
RETURNING c.id
"""


async def settle_clocks(
    db: asyncpg.Pool | asyncpg.Connection[Any], clock_ids: list[str] | None = None
) -> list[str]:
    """Mark ``ready`` the advancing test clocks (all, or these) with nothing left due."""
    return [r["id"] for r in await db.fetch(_SETTLE_CLOCKS, clock_ids)]


def require_sandbox(t: Tenant) -> None:
    """Test helpers (test clocks, advancing a period) exist in the sandbox only."""
    if t.livemode:
        raise NotFound("test helpers exist in the sandbox only: use an sk_test_ key")


async def move_clock(
    conn: asyncpg.Connection[Any], changes: Changes, t: Tenant, clock_id: str, frozen_time: int
) -> None:
    """Move the clock; it is ``advancing`` until the invoicer has done everything the move
        made due (every period boundary and payment retry crossed, in order), then ``ready``. The
    meter epoch moves with it: ingest takes meter events at the clock's time."""
    await store.move_clock(conn, clock_id, frozen_time)
    await settle_clocks(conn, [clock_id])
    await changes.bump_clock(clock_id)
    await bump_meter_epoch(conn)  # ingest's cached "now" of the clock's customers drops
    clock = await store.clock(conn, clock_id)
    await emit_event(
        conn, t.account_id, t.livemode, "test_helpers.test_clock.advanced", render_test_clock(clock)
    )


async def advance_period(
    conn: asyncpg.Connection[Any], changes: Changes, t: Tenant, sub_id: str
) -> None:
    """ "Advance billing period": move the sandbox subscription's clock to the end of its
    current period (attaching a new test clock when it has none); the invoicer then closes
    and invoices the period. Run inside the caller's transaction; 404 for another
    account's, mode's or a missing subscription, 400 for a canceled one."""
    require_sandbox(t)
    sub = found(await store.lock_subscription(conn, t, sub_id), what="subscription", ident=sub_id)
    if sub["status"] == "canceled":
        raise InvalidRequest(f"subscription {sub_id} is canceled")
    clock_id = sub["test_clock_id"]
    if clock_id is None:
        clock_id = new_id("clock")
        created = subscription_now(None)
        await store.insert_clock(
            conn, clock_id, t.account_id, f"advance_period {sub_id}", created, created
        )
        await store.set_test_clock(conn, sub_id, clock_id)
    frozen = await store.clock_frozen_time(conn, clock_id)
    target = sub["current_period_end"]
    if frozen >= target:
        anchor, interval, count = sub["anchor"], sub["interval"], sub["interval_count"]
        target = period_containing(anchor, interval, count, frozen).end
    await move_clock(conn, changes, t, clock_id, target)
