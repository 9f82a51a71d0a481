"""The coalescer behind the hot path's Redis calls: what arrives in one event-loop
iteration goes out as one call, in order, with bounded concurrency; a failed call fails
exactly its own items. (Pure asyncio: no services needed.)"""

from __future__ import annotations

import asyncio
import contextlib

from infra.coalescer import Coalescer


class _Recorder:
    def __init__(self, fail_on: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.running = 0
        self.peak = 0
        self.fail_on = fail_on
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(items)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await self.gate.wait()
            await asyncio.sleep(0)
            if self.fail_on in items:
                raise ConnectionError("down")
            return [i * 10 for i in items]
        finally:
            self.running -= 1


async def test_one_iteration_is_one_call() -> None:
    run = _Recorder()
    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=100, max_concurrent=2)
    results = await asyncio.gather(*(coalescer.enqueue(i) for i in range(50)))
    assert results == [i * 10 for i in range(50)]
    assert run.calls == [list(range(50))]


async def test_batches_are_bounded_in_size_and_concurrency() -> None:
    run = _Recorder()
    run.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=10, max_concurrent=2)
    pending = [asyncio.ensure_future(coalescer.enqueue(i)) for i in range(35)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert [len(c) for c in run.calls] == [10, 10]  # two in flight, the rest waits
    run.gate.set()
    assert await asyncio.gather(*pending) == [i * 10 for i in range(35)]
    assert run.peak == 2
    assert [x for call in run.calls for x in call] == list(range(35))  # order kept
    assert all(len(c) <= 10 for c in run.calls)


async def test_a_failed_call_fails_its_items_only() -> None:
    run = _Recorder(fail_on=3)
    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=5, max_concurrent=1)
    results = await asyncio.gather(
        *(coalescer.enqueue(i) for i in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results[:5])
    assert results[5:] == [50, 60, 70, 80, 90]


async def test_enqueue_and_drain() -> None:
    run = _Recorder()
    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=3, max_concurrent=1)
    futures = [coalescer.enqueue(i) for i in range(7)]
    await coalescer.drain()
    assert all(f.done() for f in futures)
    assert [f.result() for f in futures] == [i * 10 for i in range(7)]


async def test_pushed_items_go_out_in_order_and_a_failure_is_reported_once() -> None:
    run = _Recorder(fail_on=3)
    errors: list[BaseException] = []
    coalescer: Coalescer[int, int] = Coalescer(
        run, max_batch=5, max_concurrent=1, on_push_error=errors.append
    )
    waited = coalescer.enqueue(0)
    for i in range(1, 10):
        coalescer.push(i)
    await coalescer.drain()
    assert run.calls == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert isinstance(waited.exception(), ConnectionError)
    assert len(errors) == 1 and isinstance(errors[0], ConnectionError)


async def test_an_item_whose_caller_gave_up_is_not_run() -> None:
    """A request that timed out while queued must not be published after its 503."""
    run = _Recorder()
    run.gate.clear()
    coalescer: Coalescer[int, int] = Coalescer(run, max_batch=100, max_concurrent=1)
    first = asyncio.ensure_future(coalescer.enqueue(1))
    await asyncio.sleep(0.01)  # call [1] runs, held at the gate
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(coalescer.enqueue(2), 0.01)  # queued, then given up
    third = asyncio.ensure_future(coalescer.enqueue(3))
    run.gate.set()
    assert await first == 10 and await third == 30
    assert run.calls == [[1], [3]]
