"""An item's usage as the summaries and the CLI show it (domain.metering): its periods with
their billable totals, and the levels of a period's chart per aggregation."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from aggregator.worker import Aggregator
from domain.metering import PeriodUsage, period_usage, span_levels
from domain.store.invoices import UsageSlice, usage_slices
from tests.support.api import metered_price, post, subscribe

T0 = 1_780_000_000  # a test clock's frozen time


def _window(start: int, end: int, **state: Any) -> dict[str, Any]:
    row = {"total": 0, "max": 0, "last_ts": None, "last_quantity": 0, "records": 0}
    return {"period_start": start, "period_end": end, "invoice_id": None} | row | state


def test_periods_newest_first_with_the_running_one_before_its_first_usage() -> None:
    windows = [
        _window(0, 10, total=7, last_ts=5, last_quantity=3, records=2, invoice_id="inv_a"),
        _window(10, 20, total=4, last_ts=12, last_quantity=4, records=1),
    ]
    periods = period_usage("sum", windows, (20, 30), {10: "inv_b"})
    assert periods == [
        PeriodUsage(20, 30, 0, None, True, None),
        PeriodUsage(10, 20, 4, "inv_b", False, 12),  # billed by an invoice not closing it
        PeriodUsage(0, 10, 7, "inv_a", False, 5),
    ]
    # Canceled: no running period is added.
    assert [p.start for p in period_usage("sum", windows, None, {})] == [10, 0]


def test_last_ever_carries_into_periods_without_usage() -> None:
    windows = [_window(0, 10, total=9, last_ts=8, last_quantity=6, records=3)]
    periods = period_usage("last_ever", windows, (10, 20), {})
    assert [(p.start, p.total) for p in periods] == [(10, 6), (0, 6)]
    assert period_usage("last_during_period", windows, (10, 20), {})[0].total == 0


SPANS = [UsageSlice(0, 10, 7, 1, 2), UsageSlice(2, 5, 5, 25, 5), UsageSlice(3, 9, 6, 37, 1)]


@pytest.mark.parametrize(
    ("aggregate", "levels"),
    [
        ("sum", [10, 0, 5, 9, 0]),  # usage added in each span
        (None, [10, 0, 5, 9, 0]),  # licensed items read as sums
        ("max", [7, 0, 5, 6, 0]),  # the largest quantity reported in each
        ("last_during_period", [2, 2, 5, 1, 1]),  # the level in effect at each span's end
        ("last_ever", [2, 2, 5, 1, 1]),
    ],
)
def test_span_levels(aggregate: str | None, levels: list[int]) -> None:
    assert span_levels(aggregate, SPANS, 5) == levels


async def test_usage_slices_read_the_map_in_spans(
    client: httpx.AsyncClient, aggregator: Aggregator, pool: asyncpg.Pool
) -> None:
    """Through the real path (API, Kafka, aggregator, usage_points): per span the sum, the
    largest quantity and the quantity at the latest timestamp, sets replacing increments."""
    price = await metered_price(client, aggregate="max")
    sub = await subscribe(client, price["id"], clock=T0 + 100)
    item = sub["items"]["data"][0]["id"]
    start = sub["currentPeriodStart"]
    for i, (offset, quantity, action) in enumerate(
        [(0, 4, "increment"), (5, 9, "increment"), (5, 2, "set"), (25, 7, "increment"),
         (28, 3, "increment"), (61, 1, "increment")]
    ):  # fmt: skip
        await post(
            client,
            "/v1/usage_records",
            {"subscriptionItem": item, "quantity": quantity, "timestamp": start + offset,
             "action": action},
            key=f"{item}-{i}",
        )  # fmt: skip
    await aggregator.drain()
    pk = await pool.fetchval("SELECT pk FROM subscription_items WHERE id = $1", item)
    spans = await usage_slices(pool, pk, start, start + 100, 5)
    # points: t0 → 4, t5 → 2 (the set replaced 9), t25 → 7, t28 → 3, t61 → 1
    assert spans == [
        UsageSlice(0, 6, 4, start + 5, 2),
        UsageSlice(1, 10, 7, start + 28, 3),
        UsageSlice(3, 1, 1, start + 61, 1),
    ]
    # a chart that ends inside its second span leaves later points out
    assert await usage_slices(pool, pk, start, start + 100, 5, upto=start + 25) == [
        UsageSlice(0, 6, 4, start + 5, 2)
    ]
    with pytest.raises(ValueError):
        await usage_slices(pool, pk, start, start + 90, 0)
