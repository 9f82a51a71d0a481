"""Browser fixtures: Playwright driving Debian's chromium (``make browser`` installs it),
and the folder screenshots go to (``artifacts/dashboard/``, not committed)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support.dashboard import Session, session

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    installed = CHROMIUM.exists()  # noqa: ASYNC240 (once per run, before any server starts)
    assert installed, f"{CHROMIUM} is missing: `make browser` installs Debian's chromium"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture
async def sessions(api: str) -> AsyncIterator[Callable[[str], Awaitable[Session]]]:
    """Log in with a key over HTTP (``await sessions(key)``); the clients close afterwards."""
    made: list[Session] = []

    async def make(key: str) -> Session:
        made.append(await session(api, key))
        return made[-1]

    yield make
    for s in made:
        await s.client.aclose()
