"""``UsageReporter``: batching per item, flush triggers, backpressure, failure handling."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from vinr_sdk import (
    APIError,
    InvalidRequestError,
    UsageBatch,
    UsageReporter,
    VinrError,
)

from ._mock import BatchServer, api_error, async_client, respond

WAIT_S = 5.0


@asynccontextmanager
async def reporter_for(
    server: BatchServer, *, max_retries: int = 0, **options: Any
) -> AsyncIterator[UsageReporter]:
    client = async_client(server, max_retries=max_retries)
    try:
        async with UsageReporter(client, **{"flush_interval_s": 60.0, **options}) as reporter:
            yield reporter
    finally:
        await client.aclose()


async def wait_until(condition: Callable[[], bool], *, step_s: float = 0.005) -> None:
    for _ in range(int(WAIT_S / step_s)):
        if condition():
            return
        await asyncio.sleep(step_s)
    raise AssertionError(f"not true within {WAIT_S} s")


async def test_records_are_batched_per_item() -> None:
    server = BatchServer()
    async with reporter_for(server) as reporter:
        for quantity in (1, 2, 3):
            await reporter.report("si_a", quantity, timestamp=100 + quantity)
        await reporter.report("si_b", 10, timestamp=200, action="set")
        await reporter.report("si_b", 20, timestamp=201)
        await reporter.flush()
        assert sorted(server.items()) == ["si_a", "si_b"]
        assert server.records("si_a") == [
            {"quantity": q, "timestamp": 100 + q, "action": "increment"} for q in (1, 2, 3)
        ]
        assert server.records("si_b") == [
            {"quantity": 10, "timestamp": 200, "action": "set"},
            {"quantity": 20, "timestamp": 201, "action": "increment"},
        ]
        assert reporter.records_sent == 5 and reporter.buffered == 0
        assert len({key for key, _ in server.calls}) == 2


async def test_a_full_buffer_is_flushed_without_waiting_for_the_interval() -> None:
    server = BatchServer()
    async with reporter_for(server, max_batch=3) as reporter:
        await reporter.report("si_b", 1)
        for _ in range(3):
            await reporter.report("si_a", 1)
        await wait_until(lambda: reporter.records_sent == 3)
        assert server.items() == ["si_a"]  # the partial si_b buffer waits
    assert server.items() == ["si_a", "si_b"]  # ...until close


async def test_batches_hold_at_most_max_batch_records_in_order() -> None:
    server = BatchServer()
    async with reporter_for(server, max_batch=3) as reporter:
        for quantity in range(7):
            await reporter.report("si_a", quantity, timestamp=1000)
        await reporter.flush()
    sizes = [len(body["records"]) for _, body in server.calls]
    assert sum(sizes) == 7 and max(sizes) == 3
    assert [r["quantity"] for r in server.records("si_a")] == list(range(7))


async def test_everything_is_flushed_on_close() -> None:
    server = BatchServer()
    async with reporter_for(server) as reporter:
        await reporter.report("si_a", 5)
        await reporter.report("si_c", 6)
        assert server.calls == []
    assert reporter.records_sent == 2 and reporter.closed
    with pytest.raises(RuntimeError, match="closed"):
        await reporter.report("si_a", 1)


async def test_buffers_are_flushed_every_interval() -> None:
    server = BatchServer()
    async with reporter_for(server, flush_interval_s=0.02) as reporter:
        await reporter.report("si_a", 1)
        await wait_until(lambda: reporter.records_sent == 1)


async def test_report_waits_while_max_buffered_records_wait() -> None:
    server = BatchServer()
    server.gate.clear()  # hold every request until released
    async with reporter_for(server, max_buffered=3) as reporter:
        for _ in range(3):
            await reporter.report("si_a", 1)
        fourth = asyncio.create_task(reporter.report("si_a", 1))
        async with asyncio.timeout(WAIT_S):
            await server.arrived.wait()  # the full buffer was flushed at once...
        await asyncio.sleep(0.05)
        assert not fourth.done() and reporter.buffered == 3  # ...and the 4th waits on it
        server.gate.set()
        async with asyncio.timeout(WAIT_S):
            await fourth
    assert reporter.records_sent == 4 and reporter.buffered == 0


async def test_a_refused_batch_goes_to_on_error() -> None:
    failures: list[tuple[UsageBatch, VinrError]] = []
    server = BatchServer(
        api_error(400, "invalid_request_error", "before the period", param="timestamp")
    )
    async with reporter_for(server, on_error=lambda b, e: failures.append((b, e))) as reporter:
        await reporter.report("si_a", 1, timestamp=1)
        await reporter.report("si_a", 2, timestamp=2)
        await reporter.flush()
        assert reporter.failed_records == 2 and reporter.records_sent == 0
        assert reporter.buffered == 0
        await reporter.report("si_a", 3)  # later records still flow
    [(batch, exc)] = failures
    assert batch.subscription_item == "si_a" and len(batch) == 2
    assert [r["quantity"] for r in batch.records] == [1, 2]
    assert isinstance(exc, InvalidRequestError) and exc.param == "timestamp"
    assert reporter.records_sent == 1


async def test_async_on_error_is_awaited() -> None:
    seen: list[int] = []

    async def on_error(batch: UsageBatch, exc: VinrError) -> None:
        await asyncio.sleep(0)
        seen.append(len(batch))

    server = BatchServer(api_error(404, "invalid_request_error", "no such item"))
    async with reporter_for(server, on_error=on_error) as reporter:
        await reporter.report("si_gone", 1)
    assert seen == [1]


async def test_the_default_on_error_logs_the_count(caplog: pytest.LogCaptureFixture) -> None:
    server = BatchServer(api_error(400, "invalid_request_error", "bad"))
    with caplog.at_level(logging.ERROR, logger="vinr_sdk.reporter"):
        async with reporter_for(server) as reporter:
            for _ in range(4):
                await reporter.report("si_a", 1)
    [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "4 usage records for si_a" in record.getMessage()


async def test_a_retryable_failure_keeps_the_batch_and_its_key() -> None:
    server = BatchServer(api_error(503, "api_error", "kafka down"))
    async with reporter_for(server, max_retries=0) as reporter:
        await reporter.report("si_a", 1, timestamp=10)
        await reporter.report("si_a", 2, timestamp=11)
        await reporter.flush()
        assert reporter.records_sent == 0 and reporter.buffered == 2
        assert reporter.failed_records == 0
        await reporter.report("si_a", 3, timestamp=12)
        await reporter.flush()
    (key1, body1), (key2, body2), (key3, body3) = server.calls
    assert key2 == key1 and body2 == body1  # the same batch, replayable
    assert key3 != key1 and [r["quantity"] for r in body3["records"]] == [3]  # after it
    assert reporter.records_sent == 3


async def test_client_retries_reuse_the_batch_key() -> None:
    server = BatchServer(api_error(503, "api_error"), httpx.ConnectError("reset"))
    async with reporter_for(server, max_retries=2) as reporter:
        await reporter.report("si_a", 1)
        await reporter.flush()
        assert reporter.records_sent == 1
    assert len(server.calls) == 3 and len({key for key, _ in server.calls}) == 1


async def test_undeliverable_batches_go_to_on_error_at_close() -> None:
    failures: list[tuple[UsageBatch, VinrError]] = []
    server = BatchServer(*[api_error(503, "api_error", "down")] * 10)
    async with reporter_for(server, on_error=lambda b, e: failures.append((b, e))) as reporter:
        await reporter.report("si_a", 1)
        await reporter.flush()
        assert failures == [] and reporter.buffered == 1
    [(batch, exc)] = failures
    assert len(batch) == 1 and isinstance(exc, APIError) and exc.http_status == 503
    assert reporter.failed_records == 1 and reporter.buffered == 0


async def test_the_timestamp_is_taken_at_report_time() -> None:
    server = BatchServer()
    async with reporter_for(server) as reporter:
        before = int(time.time())
        await reporter.report("si_a", 1)
    [record] = server.records("si_a")
    assert before <= record["timestamp"] <= int(time.time())


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (("", 1), {}),
        (("si_a", -1), {}),
        (("si_a", True), {}),
        (("si_a", 2**53 + 1), {}),
        (("si_a", 1.5), {}),
        (("si_a", 1), {"action": "add"}),
        (("si_a", 1), {"timestamp": 1.5}),
    ],
)
async def test_bad_records_are_refused_at_once(args: tuple[Any, ...], kwargs: Any) -> None:
    server = BatchServer()
    async with reporter_for(server) as reporter:
        with pytest.raises(ValueError):
            await reporter.report(*args, **kwargs)
    assert server.calls == []


@pytest.mark.parametrize(
    "options",
    [
        {"max_batch": 0},
        {"max_batch": 1001},
        {"flush_interval_s": 0},
        {"max_buffered": 0},
        {"max_concurrency": 0},
    ],
)
async def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    client = async_client(BatchServer())
    try:
        with pytest.raises(ValueError):
            UsageReporter(client, **options)
    finally:
        await client.aclose()


async def test_close_is_idempotent() -> None:
    server = BatchServer()
    async with reporter_for(server) as reporter:
        await reporter.report("si_a", 1)
        await reporter.close()
        await reporter.close()
    assert reporter.records_sent == 1 and len(server.calls) == 1


class FlakyIdempotentServer:
    """Fails at random (503, or a response lost after processing) and replays by key."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.accepted: dict[str, dict[str, Any]] = {}
        self.mismatched_keys: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        key = request.headers["idempotency-key"]
        body = json.loads(await request.aread())
        await asyncio.sleep(0)
        if body["subscriptionItem"] == "si_bad":
            return api_error(400, "invalid_request_error", "no such item")
        if key in self.accepted:
            if self.accepted[key] != body:
                self.mismatched_keys.append(key)
            return respond(200, {"id": key, "count": len(body["records"])})
        roll = self.rng.random()
        if roll < 0.3:
            return api_error(503, "api_error", "busy", headers={"Retry-After": "0"})
        self.accepted[key] = body
        if roll < 0.4:
            raise httpx.ReadError("connection reset after the server processed the batch")
        return respond(200, {"id": key, "count": len(body["records"])})

    def accepted_records(self) -> int:
        return sum(len(body["records"]) for body in self.accepted.values())


@pytest.mark.parametrize("seed", range(5))
async def test_nothing_is_lost_or_double_counted_under_failures(seed: int) -> None:
    server = FlakyIdempotentServer(seed)
    rng = random.Random(seed)
    client = async_client(server, max_retries=2)
    items = ["si_a", "si_b", "si_c", "si_bad"]
    reported = {item: 0 for item in items}
    given_up: list[UsageBatch] = []

    def on_error(batch: UsageBatch, exc: VinrError) -> None:
        if not isinstance(exc, InvalidRequestError):
            given_up.append(batch)

    try:
        async with UsageReporter(
            client, max_batch=7, flush_interval_s=0.005, max_buffered=40, on_error=on_error
        ) as reporter:
            for _ in range(400):
                item = rng.choice(items)
                await reporter.report(item, 1, timestamp=1000)
                reported[item] += 1
                if rng.random() < 0.05:
                    await reporter.flush()
    finally:
        await client.aclose()
    gave_up = sum(len(batch) for batch in given_up)
    assert server.mismatched_keys == []
    assert reporter.records_sent + reporter.failed_records == sum(reported.values())
    assert reporter.failed_records == reported["si_bad"] + gave_up
    assert reporter.records_sent <= server.accepted_records() <= reporter.records_sent + gave_up
    assert all(body["subscriptionItem"] != "si_bad" for body in server.accepted.values())
    assert reporter.buffered == 0
