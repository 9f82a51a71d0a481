"""Test clocks: a clock is ``advancing`` while anything it made due is still to do, and
``ready`` once the invoicer (or the control plane, for a subscription advanced within a
request) has done it all."""

from __future__ import annotations

from typing import Any

import asyncpg

__all__ = ["settle_clocks"]

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
