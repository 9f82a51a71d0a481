"""Shared pieces of the rate-limit tests over HTTP: an account with its own limits from its
first request, a loop that sends until refused, and the refusal counter."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
from prometheus_client import REGISTRY

from domain.accounts import create_account
from domain.ratelimit.store import set_overrides


def key_client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=15, headers={"Authorization": f"Bearer {key}"})


async def limited_account(pool: asyncpg.Pool, **limits: int) -> tuple[str, str]:
    """A new account whose keys have these limits from their first request (no API
    process has cached its limits yet): (account id, sandbox key)."""
    async with pool.acquire() as conn:
        account, key, _ = await create_account(conn, f"limited-{uuid.uuid4().hex[:6]}")
        await set_overrides(conn, account, limits)
    return account, key


async def until_refused(
    send: Callable[[], Awaitable[httpx.Response]], tries: int = 40
) -> tuple[int, httpx.Response]:
    """(requests admitted, the first 429): every other answer must be a 200."""
    for admitted in range(tries):
        response = await send()
        if response.status_code == 429:
            return admitted, response
        assert response.status_code == 200, response.text
    raise AssertionError(f"{tries} requests admitted, none refused")


def refused_count(plane: str) -> float:
    return REGISTRY.get_sample_value("vinr_rate_limited_total", {"plane": plane}) or 0.0
