"""Per-key rate limits on the control plane, on a live server: a key over its account's
limit gets 429 ``rate_limit_error`` with an honest ``Retry-After``, another key of the same
account has its own budget, the key is admitted again once the wait is over, and without
Redis the control plane fails open (counted) rather than refusing reads."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from prometheus_client import REGISTRY

from domain.accounts import create_key
from infra.settings import Settings
from tests.support.ingest import TcpProxy, api_instance, error_of
from tests.support.limits import key_client, limited_account, refused_count, until_refused


async def test_a_key_over_its_control_limit_is_refused_then_admitted(
    api: str, pool: asyncpg.Pool
) -> None:
    rate, burst = 1, 3
    account, key = await limited_account(pool, control_rate=rate, control_burst=burst)
    before = refused_count("control")
    began = time.monotonic()
    async with key_client(api, key) as c:
        reads, refused = await until_refused(lambda: c.get("/v1/products"))
        writes, refused_post = await until_refused(
            lambda: c.post("/v1/products", json={"name": "API"})
        )
        elapsed = time.monotonic() - began
        # A fresh bucket: the burst at once, then the rate, never more.
        assert burst <= reads + writes <= burst + rate * elapsed
        for response in (refused, refused_post):
            assert response.headers["Retry-After"] == "1"
            error = error_of(response)
            assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limited")
            assert error["message"] == (
                "this key exceeded its limit of 1 requests/s on the control plane (burst 3);"
                " retry after 1 s"
            )
        assert refused_count("control") - before >= 2
        # Another key of the same account has a budget of its own.
        async with pool.acquire() as conn:
            other = (await create_key(conn, account, livemode=False)).secret
        async with key_client(api, other) as c2:
            for _ in range(burst):
                assert (await c2.get("/v1/products")).status_code == 200
        # Once Retry-After has passed, the first key is admitted again.
        await asyncio.sleep(int(refused.headers["Retry-After"]))
        again = await c.get("/v1/products")
        assert again.status_code == 200, again.text


async def test_an_unlimited_path_and_a_default_key_are_not_refused(
    api: str, client: httpx.AsyncClient
) -> None:
    """Health and metrics need no key and have no limit; a default key takes its burst."""
    for _ in range(250):
        assert (await client.get("/healthz")).status_code == 200
    results = await asyncio.gather(*(client.get("/v1/products") for _ in range(100)))
    assert [r.status_code for r in results] == [200] * 100


def _proxied(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def test_without_redis_the_control_plane_fails_open(
    settings: Settings, secret_key: str
) -> None:
    redis_url = settings.redis_url.get_secret_value()
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.restore()
    unchecked = REGISTRY.get_sample_value("vinr_rate_limit_unchecked_total", {"plane": "control"})
    try:
        async with (
            api_instance(settings, redis_url=_proxied(redis_url, proxy.port)) as server,
            key_client(server.url, secret_key) as c,
        ):
            assert (await c.get("/v1/products")).status_code == 200
            await proxy.cut()
            for _ in range(3):
                response = await c.get("/v1/products")
                assert response.status_code == 200, response.text
            after = REGISTRY.get_sample_value(
                "vinr_rate_limit_unchecked_total", {"plane": "control"}
            )
            assert (after or 0.0) - (unchecked or 0.0) == 3
            # The usage plane cannot accept anything without Redis: 503, not unchecked.
            usage = await c.post(
                "/v1/usage_records", json={"subscriptionItem": "si_x", "quantity": 1}
            )
            assert usage.status_code == 503, usage.text
            assert "redis" in error_of(usage)["message"]
    finally:
        await proxy.cut()
