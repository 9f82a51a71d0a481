"""Progress bars for long operator work: replays, retention passes, migrations, load runs.

A bar is drawn on stderr, so stdout stays what a script reads, and only when stderr is a
terminal: piped, captured or redirected to a file, nothing at all is written for it. The
work itself only calls a ``Report`` (done, total); it never knows whether a bar is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

__all__ = ["Report", "bar", "ignore", "shown", "timed"]

Report = Callable[[int, int], None]
"""Called with (steps done, steps in all) as work advances."""


def ignore(done: int, total: int) -> None:
    """A ``Report`` for work nobody watches."""


def shown() -> bool:
    """Whether a bar would be drawn: stderr is a terminal."""
    return sys.stderr.isatty()


@contextlib.contextmanager
def bar(description: str) -> Iterator[Report]:
    """A bar of counted steps while the block runs; it disappears when the block ends."""
    if not shown():
        yield ignore
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        with _logs_above_the_bar():
            yield report


@contextlib.asynccontextmanager
async def timed(description: str, seconds: float) -> AsyncIterator[None]:
    """A bar that fills over ``seconds`` while the block runs (work of a known duration,
    such as a load run in another process)."""
    if not shown():
        yield
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=seconds)
        began = time.monotonic()

        async def tick() -> None:
            while True:
                progress.update(task, completed=min(seconds, time.monotonic() - began))
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(tick())
        try:
            with _logs_above_the_bar():
                yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker


@contextlib.contextmanager
def _logs_above_the_bar() -> Iterator[None]:
    """Log lines written to stderr while a bar is shown go through the bar's console (rich
    has put its proxy in ``sys.stderr``), so they print above the bar instead of through it."""
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.__stderr__:
            moved.append((handler, handler.stream))
            handler.setStream(sys.stderr)
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)
