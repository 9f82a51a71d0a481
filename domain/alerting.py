"""Usage threshold alerts: evaluated in the transaction that counts a meter's events, fired
once per alert and customer.

The aggregator asks, with the statement that writes a batch's buckets, which active alerts
watch the batch's (meter, customer) pairs — an alert without a customer filter watches
every customer of its meter — and have not fired for that customer yet (``candidates_sql``:
no extra round trip, and a batch on meters without alerts pays only an index probe on
``billing_alerts_meter``). Only those are evaluated (``evaluate``):

- the customer's current period comes from its subscription (status active, past_due or
  trialing) that has a live item on a price billing the meter (``prices.meter_pk``); the
  latest-starting one when there are several; without one the alert is not evaluated;
- the value is the meter's formula over ``[current_period_start, current_period_end)``
  (``domain.meterusage.range_stats``, which sees the buckets the batch just wrote);
- at ``value >= gte`` a ``billing_alert_triggers`` row is inserted (``ON CONFLICT DO
  NOTHING``: the row is the proof it fired), and for each inserted row a
  ``billing.alert.triggered`` event goes to the outbox, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import asyncpg

from domain.clock import now_s
from domain.events import Event, emit_events
from domain.meters import Number, decimal_text, formula_value, parse_formula
from domain.meterusage import RangeAsk, range_stats
from domain.objects import render_alert
from infra.ids import new_id

__all__ = ["ALERT_TRIGGERED", "candidates_sql", "evaluate"]

ALERT_TRIGGERED = "billing.alert.triggered"


def candidates_sql(meters: int, customers: int) -> str:
    """A query of the (alert_pk, customer_pk) pairs to evaluate for the (meter, customer)
    pairs given as the parameters ``$meters`` and ``$customers`` (bigint arrays)."""
    return (
        "SELECT a.pk AS alert_pk, k.c AS customer_pk FROM billing_alerts a"
        f" JOIN unnest(${meters}::bigint[], ${customers}::bigint[]) AS k(m, c)"
        " ON a.meter_pk = k.m AND (a.customer_pk IS NULL OR a.customer_pk = k.c)"
        " WHERE a.status = 'active' AND NOT EXISTS (SELECT 1 FROM billing_alert_triggers t"
        " WHERE t.alert_pk = a.pk AND t.customer_pk = k.c)"
    )


_CONTEXT = """
SELECT a.pk, a.id, a.account_id, a.livemode, a.title, a.meter_pk, a.customer_pk AS filter_pk,
       a.gte, a.recurrence, a.status, a.created, m.id AS meter_id, m.formula,
       k.c AS customer_pk, cu.id AS customer_id, fc.id AS filter_id,
       s.current_period_start, s.current_period_end
FROM unnest($1::bigint[], $2::bigint[]) AS k(a, c)
JOIN billing_alerts a ON a.pk = k.a AND a.status = 'active'
JOIN meters m ON m.pk = a.meter_pk
JOIN customers cu ON cu.pk = k.c
LEFT JOIN customers fc ON fc.pk = a.customer_pk
JOIN LATERAL (
    SELECT s.current_period_start, s.current_period_end FROM subscriptions s
    WHERE s.customer_pk = k.c AND s.status IN ('active', 'past_due', 'trialing')
      AND EXISTS (SELECT 1 FROM subscription_items i JOIN prices p ON p.id = i.price_id
                  WHERE i.subscription_id = s.id AND NOT i.deleted AND p.meter_pk = a.meter_pk)
    ORDER BY s.current_period_start DESC, s.id LIMIT 1
) s ON true
ORDER BY a.pk, k.c
"""


def _json_number(value: Number) -> int | float:
    return value if type(value) is int else float(value)


async def evaluate(conn: asyncpg.Connection[Any], candidates: Sequence[tuple[int, int]]) -> int:
    """Evaluate the (alert_pk, customer_pk) ``candidates`` in the caller's transaction; fire
    those at their threshold. Returns how many fired."""
    if not candidates:
        return 0
    rows = await conn.fetch(_CONTEXT, [c[0] for c in candidates], [c[1] for c in candidates])
    if not rows:
        return 0
    stats = await range_stats(
        conn,
        [
            RangeAsk(
                r["meter_pk"], r["customer_pk"], r["current_period_start"], r["current_period_end"]
            )
            for r in rows
        ],
    )
    due: list[tuple[asyncpg.Record, Number]] = []
    for row, s in zip(rows, stats, strict=True):
        value = formula_value(parse_formula(row["formula"]), s)
        if value >= Decimal(row["gte"]):
            due.append((row, value))
    if not due:
        return 0
    event_ids = [new_id("evt") for _ in due]
    created = now_s()
    fired = await conn.fetch(
        "INSERT INTO billing_alert_triggers (alert_pk, customer_pk, value, event_id, created)"
        " SELECT a, c, val, e, $5 FROM unnest($1::bigint[], $2::bigint[], $3::numeric[],"
        " $4::text[]) AS v(a, c, val, e)"
        " ON CONFLICT DO NOTHING RETURNING alert_pk, customer_pk",
        [r["pk"] for r, _ in due],
        [r["customer_pk"] for r, _ in due],
        [Decimal(decimal_text(v)) for _, v in due],
        event_ids,
        created,
    )
    done = {(f["alert_pk"], f["customer_pk"]) for f in fired}
    events: list[Event] = []
    ids: list[str] = []
    for (row, value), event_id in zip(due, event_ids, strict=True):
        if (row["pk"], row["customer_pk"]) not in done:
            continue
        ids.append(event_id)
        events.append(
            Event(
                row["account_id"],
                row["livemode"],
                ALERT_TRIGGERED,
                {
                    "object": "billing.alert_triggered",
                    "alert": render_alert(
                        row, meter_id=row["meter_id"], customer_id=row["filter_id"]
                    ),
                    "customer": row["customer_id"],
                    "value": _json_number(value),
                    "valueDecimal": decimal_text(value),
                    "created": created,
                    "livemode": row["livemode"],
                },
            )
        )
    await emit_events(conn, events, ids=ids)
    return len(events)
