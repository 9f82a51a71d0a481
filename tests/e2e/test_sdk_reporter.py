"""``UsageReporter`` end to end: many records for a few items, reported concurrently, batched
by the SDK, folded by the aggregator; the summaries equal what was reported, and a batch the
API refuses is handed to ``on_error`` rather than dropped silently."""

from __future__ import annotations

import asyncio

import httpx
from vinr_sdk import AsyncVinr, UsageBatch, UsageReporter, VinrError

from aggregator.worker import Aggregator
from tests.support.api import metered_price, subscribe

RECORDS_PER_ITEM = 1500


def quantity(i: int) -> int:
    return i % 7 + 1


async def test_reported_usage_is_all_in_the_summaries(
    api: str, secret_key: str, client: httpx.AsyncClient, aggregator: Aggregator
) -> None:
    price = await metered_price(client)
    items = [(await subscribe(client, price["id"]))["items"]["data"][0]["id"] for _ in range(3)]
    refused: list[tuple[UsageBatch, VinrError]] = []

    async with AsyncVinr(secret_key, api_base=api) as vinr:
        reporter = UsageReporter(
            vinr,
            max_batch=200,
            flush_interval_s=0.05,
            max_buffered=500,
            on_error=lambda batch, exc: refused.append((batch, exc)),
        )

        async def produce(item: str) -> None:
            for i in range(RECORDS_PER_ITEM):
                await reporter.report(item, quantity(i))

        async with reporter:
            await asyncio.gather(*(produce(item) for item in items))
            await reporter.report("si_unknown", 5)
        assert reporter.closed and reporter.buffered == 0
        assert reporter.records_sent == 3 * RECORDS_PER_ITEM
        assert reporter.failed_records == 1

        await aggregator.drain()
        expected = sum(quantity(i) for i in range(RECORDS_PER_ITEM))
        for item in items:
            summary = await vinr.usage_records.summaries(subscription_item=item)
            assert summary.data[0].total_usage == expected, item

    ((batch, exc),) = refused
    assert batch.subscription_item == "si_unknown" and len(batch) == 1
    assert exc.http_status == 404
