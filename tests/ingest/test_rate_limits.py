"""Per-key rate limits on usage ingestion, on a live server: a key over its account's usage
limit gets 429 ``rate_limit_error`` (not the in-flight bound's code) with ``Retry-After``,
singles and batches share the budget, a refused request records nothing, another key of the
account has its own budget, the control plane keeps its own, and once the wait is over the
key is admitted again."""

from __future__ import annotations

import asyncio
import time

import asyncpg
from prometheus_client import REGISTRY

from aggregator.worker import Aggregator
from domain.accounts import create_key
from tests.support.api import metered_price, subscribe
from tests.support.ingest import error_of, total_usage
from tests.support.limits import key_client, limited_account, refused_count, until_refused


async def test_a_key_over_its_usage_limit_is_refused_then_admitted(
    api: str, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    rate, burst = 1, 5
    account, key = await limited_account(pool, usage_rate=rate, usage_burst=burst)
    async with key_client(api, key) as c:
        price = await metered_price(c)
        item = (await subscribe(c, price["id"]))["items"]["data"][0]["id"]
        single = {"subscriptionItem": item, "quantity": 1, "timestamp": int(time.time())}
        batch = {"subscriptionItem": item, "records": [{"quantity": 1}, {"quantity": 1}]}
        refused_before = refused_count("usage")
        rejected_before = (
            REGISTRY.get_sample_value("vinr_ingest_rejected_total", {"reason": "rate_limited"})
            or 0.0
        )
        began = time.monotonic()
        singles, refused = await until_refused(lambda: c.post("/v1/usage_records", json=single))
        batches, refused_batch = await until_refused(
            lambda: c.post("/v1/usage_records/batch", json=batch)
        )
        elapsed = time.monotonic() - began
        assert burst <= singles + batches <= burst + rate * elapsed
        for response in (refused, refused_batch):
            assert response.headers["Retry-After"] == "1"
            error = error_of(response)
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
            assert error["message"] == (
                "this key exceeded its limit of 1 requests/s on usage ingestion (burst 5);"
                " retry after 1 s"
            )
        assert refused_count("usage") - refused_before >= 2
        rejected = REGISTRY.get_sample_value(
            "vinr_ingest_rejected_total", {"reason": "rate_limited"}
        )
        assert (rejected or 0.0) - rejected_before >= 2
        # The control plane has a budget of its own.
        assert (await c.get("/v1/products")).status_code == 200
        # So has another key of the account.
        async with pool.acquire() as conn:
            other = (await create_key(conn, account, livemode=False)).secret
        async with key_client(api, other) as c2:
            for _ in range(burst):
                response = await c2.post("/v1/usage_records", json=single)
                assert response.status_code == 200, response.text
        await asyncio.sleep(int(refused.headers["Retry-After"]))
        again = await c.post("/v1/usage_records", json=single)
        assert again.status_code == 200, again.text
        await aggregator.drain()
        # What was refused recorded nothing.
        assert await total_usage(c, item) == singles + 2 * batches + burst + 1
