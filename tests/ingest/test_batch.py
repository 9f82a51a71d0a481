"""Batches: ≤ 1000 records for one item, validated and accepted as a whole, one ledger entry
per request, and optional per-record idempotency keys that never count a record twice."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx

from aggregator.worker import Aggregator
from tests.support.api import metered_price, post, subscribe
from tests.support.ingest import error_of, ledger, total_usage


async def _item(client: httpx.AsyncClient) -> str:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    item: str = sub["items"]["data"][0]["id"]
    return item


def _batch(item: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {"subscriptionItem": item, "records": records}


async def test_a_batch_is_one_ledger_entry(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    item = await _item(client)
    now = int(time.time())
    result = await post(
        client,
        "/v1/usage_records/batch",
        _batch(item, [{"quantity": i, "timestamp": now + i % 5} for i in range(1000)]),
        key="big",
    )
    assert result["object"] == "usage_record_batch" and result["count"] == 1000
    assert result["duplicates"] == 0
    assert len({r["id"] for r in result["data"]}) == 1000
    assert all(r["id"].startswith(result["id"]) for r in result["data"])
    await aggregator.drain()
    rows = await ledger(pool, item)
    assert [(r["id"], r["records"]) for r in rows] == [(result["id"], 1000)]
    assert await total_usage(client, item) == sum(range(1000))


async def test_every_bad_record_is_named_and_nothing_is_published(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    item = await _item(client)
    now = int(time.time())
    records: list[dict[str, Any]] = [{"quantity": 1, "timestamp": now} for _ in range(10)]
    records[3]["quantity"] = -1
    records[7]["timestamp"] = "yesterday"
    records[8]["colour"] = "red"
    bad = await client.post("/v1/usage_records/batch", json=_batch(item, records))
    assert bad.status_code == 400
    error = error_of(bad)
    assert "records[3].quantity, records[7].timestamp, records[8].colour" in error["message"]
    assert error["param"] == "records[3].quantity"

    records = [{"quantity": 1, "timestamp": now} for _ in range(10)]
    records[2]["timestamp"] = now - 40 * 86_400
    records[5]["timestamp"] = now + 3600
    bad = await client.post("/v1/usage_records/batch", json=_batch(item, records))
    assert bad.status_code == 400
    error = error_of(bad)
    assert "records[2].timestamp, records[5].timestamp" in error["message"]
    assert "before the current billing period" in error["message"]
    assert "in the future" in error["message"]

    too_many = await client.post(
        "/v1/usage_records/batch", json=_batch(item, [{"quantity": 1}] * 1001)
    )
    assert too_many.status_code == 400
    assert error_of(too_many)["param"] == "records"
    await aggregator.drain()
    assert await ledger(pool, item) == []
    assert await total_usage(client, item) == 0


async def test_per_record_keys_skip_records_already_accepted(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    item = await _item(client)
    now = int(time.time())

    def rec(key: str, quantity: int) -> dict[str, Any]:
        return {"quantity": quantity, "timestamp": now, "idempotencyKey": key}

    first = await post(
        client, "/v1/usage_records/batch", _batch(item, [rec("a", 1), rec("b", 10), rec("c", 100)])
    )
    second_body = _batch(
        item, [rec("b", 10), rec("d", 1000), {"quantity": 5, "timestamp": now}, rec("c", 100)]
    )
    second = await post(client, "/v1/usage_records/batch", second_body, key="second")
    assert [r["duplicate"] for r in second["data"]] == [True, False, False, True]
    assert second["duplicates"] == 2
    # A duplicate carries the id the record was first accepted under.
    assert second["data"][0]["id"] == first["data"][1]["id"]
    assert second["data"][3]["id"] == first["data"][2]["id"]
    replay = await client.post(
        "/v1/usage_records/batch", json=second_body, headers={"Idempotency-Key": "second"}
    )
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == second
    everything_seen = await post(
        client, "/v1/usage_records/batch", _batch(item, [rec("a", 1), rec("d", 1000)])
    )
    assert everything_seen["duplicates"] == 2
    await aggregator.drain()
    assert await total_usage(client, item) == 1 + 10 + 100 + 1000 + 5
    rows = {r["id"]: r["records"] for r in await ledger(pool, item)}
    assert rows == {first["id"]: 3, second["id"]: 2}  # the all-duplicate batch published nothing


async def test_per_record_key_reuse_and_repeats_are_refused(
    client: httpx.AsyncClient, pool: asyncpg.Pool, aggregator: Aggregator
) -> None:
    item = await _item(client)
    now = int(time.time())
    await post(
        client,
        "/v1/usage_records/batch",
        _batch(item, [{"quantity": 1, "timestamp": now, "idempotencyKey": "k1"}]),
    )
    reused = await client.post(
        "/v1/usage_records/batch",
        json=_batch(
            item,
            [
                {"quantity": 1, "timestamp": now, "idempotencyKey": "k0"},
                {"quantity": 2, "timestamp": now, "idempotencyKey": "k1"},
            ],
        ),
    )
    assert reused.status_code == 400
    error = error_of(reused)
    assert error["type"] == "idempotency_error" and error["param"] == "records[1].idempotencyKey"
    repeated = await client.post(
        "/v1/usage_records/batch",
        json=_batch(
            item, [{"quantity": 1, "idempotencyKey": "k2"}, {"quantity": 1, "idempotencyKey": "k2"}]
        ),
    )
    assert repeated.status_code == 400
    assert error_of(repeated)["param"] == "records[1].idempotencyKey"
    # The refused batch claimed nothing: k0 is still free.
    ok = await post(
        client,
        "/v1/usage_records/batch",
        _batch(item, [{"quantity": 4, "timestamp": now, "idempotencyKey": "k0"}]),
    )
    assert ok["duplicates"] == 0
    await aggregator.drain()
    assert await total_usage(client, item) == 5
