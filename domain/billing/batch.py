"""How every billing step talks to Postgres.

Each step is one transaction over a batch of subscriptions or invoices, a fixed number of
statements however large the batch (thousands of invoices per second). Rows are claimed
with ``FOR UPDATE SKIP LOCKED`` and re-checked under the lock, so several invoicers can run:
one wins each row, and the unique ``(subscription_id, period_start, billing_reason)`` makes
a second invoice for a period impossible even if locking were bypassed. Subscriptions are
locked in id order, so steps of different batches wait for each other instead of
deadlocking. Events go to the outbox in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

__all__ = ["int_array", "lock_subscriptions"]

_INT64 = 2**63 - 1


def int_array(values: Sequence[int | Decimal]) -> str:
    """The array type to send numbers as: bigint[] travels much faster than numeric[];
    numeric only for amounts beyond 64 bits and decimal quantities."""
    return "bigint" if all(type(v) is int and -_INT64 <= v <= _INT64 for v in values) else "numeric"


async def lock_subscriptions(conn: asyncpg.Connection[Any], sub_ids: set[str]) -> None:
    """Lock in id order: finalizers and collectors touching the same subscriptions from
    different batches then wait for each other instead of deadlocking."""
    await conn.execute(
        "SELECT 1 FROM subscriptions WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
        sorted(sub_ids),
    )
