"""``/v1/api_keys`` on a live server: create, list, read, roll and revoke in the caller's
account and mode; the secret shown once; restricted keys that report usage and are refused
everything else; revoked and expired keys refused; other accounts' and modes' keys 404."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx

from domain.accounts import create_account
from tests.support.api import metered_price, post, subscribe


async def _account(pool: asyncpg.Pool) -> tuple[str, str, str]:
    async with pool.acquire() as conn:
        return await create_account(conn, f"apikeys-{uuid.uuid4().hex[:6]}")


@asynccontextmanager
async def _as(api: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=api, timeout=30, headers={"Authorization": f"Bearer {key}"}
    ) as c:
        yield c


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def _refused_within(c: httpx.AsyncClient, path: str, seconds: float) -> httpx.Response:
    """Poll ``GET path`` until it answers 401; fails past ``seconds``."""
    started = time.monotonic()
    while True:
        response = await c.get(path)
        if response.status_code == 401:
            return response
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < seconds, f"still accepted after {seconds} s"
        await asyncio.sleep(0.05)


async def test_create_shows_the_secret_once(api: str, pool: asyncpg.Pool) -> None:
    account, test_key, _ = await _account(pool)
    async with _as(api, test_key) as c:
        created = await post(c, "/v1/api_keys", {"name": "billing job"}, key="k1")
        secret = created.pop("secret")
        assert secret.startswith("sk_test_")
        assert created["id"].startswith("key_")
        assert {k: created[k] for k in ("object", "livemode", "type", "name", "status")} == {
            "object": "api_key",
            "livemode": False,
            "type": "secret",
            "name": "billing job",
            "status": "active",
        }
        assert created["hint"] == f"{secret[:8]}…{secret[-4:]}"
        assert (created["permissions"], created["expiresAt"], created["revoked"]) == (
            [],
            None,
            False,
        )
        # A replay answers the same key, without its secret.
        replay = await c.post(
            "/v1/api_keys", json={"name": "billing job"}, headers={"Idempotency-Key": "k1"}
        )
        assert replay.status_code == 200 and replay.headers["idempotent-replayed"] == "true"
        assert replay.json() == created | {"secret": None}
        read = (await c.get(f"/v1/api_keys/{created['id']}")).json()
        assert read == created
        listed = (await c.get("/v1/api_keys", params={"limit": 100})).json()
        assert created["id"] in [k["id"] for k in listed["data"]]
        assert len(listed["data"]) == 2 and all("secret" not in k for k in listed["data"])
        assert secret not in str(listed) and secret not in str(read)
    async with _as(api, secret) as fresh:
        products = await fresh.get("/v1/products")
        assert products.status_code == 200, products.text
    async with pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT string_agg(row_to_json(k)::text, '') FROM api_keys k WHERE account_id = $1",
            account,
        )
    assert secret not in stored


async def test_list_is_paginated_newest_first(api: str, pool: asyncpg.Pool) -> None:
    _, test_key, _ = await _account(pool)
    async with _as(api, test_key) as c:
        made = [(await post(c, "/v1/api_keys", {"restricted": True}))["id"] for _ in range(3)]
        first = (await c.get("/v1/api_keys", params={"limit": 2})).json()
        assert first["hasMore"] is True and first["url"] == "/v1/api_keys"
        ids = [k["id"] for k in first["data"]]
        rest = (await c.get("/v1/api_keys", params={"limit": 2, "startingAfter": ids[-1]})).json()
        ids += [k["id"] for k in rest["data"]]
        assert rest["hasMore"] is False and len(ids) == 4
        assert set(made) < set(ids) and len(set(ids)) == 4
        bad = await c.get("/v1/api_keys", params={"limit": 0})
        assert _error(bad, 400)["param"] == "limit"


async def test_a_restricted_key_reports_usage_and_nothing_else(
    api: str, client: httpx.AsyncClient
) -> None:
    price = await metered_price(client)
    item = (await subscribe(client, price["id"]))["items"]["data"][0]["id"]
    restricted = await post(client, "/v1/api_keys", {"restricted": True, "name": "producer"})
    assert restricted["type"] == "restricted"
    assert restricted["permissions"] == ["usage_records: write"]
    assert restricted["secret"].startswith("rk_test_")
    now = int(time.time())
    async with _as(api, restricted["secret"]) as producer:
        single = await producer.post(
            "/v1/usage_records", json={"subscriptionItem": item, "quantity": 2, "timestamp": now}
        )
        assert single.status_code == 200, single.text
        batch = await producer.post(
            "/v1/usage_records/batch",
            json={"subscriptionItem": item, "records": [{"quantity": 1, "timestamp": now}]},
            headers={"Idempotency-Key": "b1"},
        )
        assert batch.status_code == 200, batch.text
        summaries = await producer.get(
            "/v1/usage_records/summaries", params={"subscriptionItem": item}
        )
        assert summaries.status_code == 200, summaries.text
        for method, path in (
            ("GET", "/v1/invoices"),
            ("POST", "/v1/products"),
            ("GET", f"/v1/subscriptions/{item}"),
            ("GET", "/v1/api_keys"),
            ("POST", "/v1/api_keys"),
            ("POST", f"/v1/api_keys/{restricted['id']}/roll"),
            ("DELETE", f"/v1/api_keys/{restricted['id']}"),
            ("GET", "/v1/webhook_endpoints"),
            ("GET", "/v1/no_such_route"),
        ):
            refused = await producer.request(method, path, json={} if method == "POST" else None)
            error = _error(refused, 403)
            assert error["type"] == "permission_error", (method, path)
            assert error["message"] == (
                "this restricted key has the permission 'usage_records: write', which does"
                f" not allow {method} {path}; use a secret key"
            )
    assert (await client.get(f"/v1/api_keys/{restricted['id']}")).json()["revoked"] is False


async def test_revoked_keys_are_refused_within_two_seconds(api: str, pool: asyncpg.Pool) -> None:
    _, test_key, _ = await _account(pool)
    async with _as(api, test_key) as c:
        spare = await post(c, "/v1/api_keys", {})
        restricted = await post(c, "/v1/api_keys", {"restricted": True})
        async with _as(api, spare["secret"]) as s, _as(api, restricted["secret"]) as r:
            assert (await s.get("/v1/products")).status_code == 200  # its lookup is cached
            summaries = "/v1/usage_records/summaries?subscriptionItem=si_none"
            assert (await r.get(summaries)).status_code == 404
            for key in (spare, restricted):
                gone = await c.delete(f"/v1/api_keys/{key['id']}")
                assert gone.status_code == 200, gone.text
                assert gone.json()["revoked"] is True and gone.json()["status"] == "revoked"
                assert gone.json()["revokedAt"] is not None
            refused = await _refused_within(s, "/v1/products", 2.0)
            assert _error(refused, 401)["message"].startswith("this API key was revoked")
            started = time.monotonic()
            while (await r.post("/v1/usage_records", json={})).status_code != 401:
                assert time.monotonic() - started < 2.0
                await asyncio.sleep(0.05)
        again = await c.delete(f"/v1/api_keys/{spare['id']}")
        assert again.status_code == 200 and again.json()["revoked"] is True
        rolled = await c.post(f"/v1/api_keys/{spare['id']}/roll")
        assert _error(rolled, 409)["code"] == "api_key_revoked"


async def test_the_last_secret_key_of_a_mode_cannot_be_revoked(
    api: str, pool: asyncpg.Pool
) -> None:
    _, test_key, live_key = await _account(pool)
    async with _as(api, test_key) as c, _as(api, live_key) as live:
        own = (await c.get("/v1/api_keys")).json()["data"][0]
        refused = _error(await c.delete(f"/v1/api_keys/{own['id']}"), 409)
        assert refused["code"] == "last_secret_key"
        assert "vinr key create" in refused["message"]
        assert (await c.get("/v1/products")).status_code == 200
        replacement = await post(c, "/v1/api_keys", {})
        revoked = await c.delete(f"/v1/api_keys/{own['id']}")  # its own key, now allowed
        assert revoked.status_code == 200, revoked.text
        await _refused_within(c, "/v1/products", 2.0)
        live_own = (await live.get("/v1/api_keys")).json()["data"][0]
        assert _error(await live.delete(f"/v1/api_keys/{live_own['id']}"), 409)
    async with _as(api, replacement["secret"]) as c:
        assert _error(await c.delete(f"/v1/api_keys/{replacement['id']}"), 409)


async def test_roll_with_overlap_then_the_old_key_expires(api: str, pool: asyncpg.Pool) -> None:
    _, test_key, _ = await _account(pool)
    async with _as(api, test_key) as c:
        old = await post(c, "/v1/api_keys", {"name": "job"})
        async with _as(api, old["secret"]) as o:
            assert (await o.get("/v1/products")).status_code == 200  # cached
            rolled = await post(c, f"/v1/api_keys/{old['id']}/roll", {"expiresIn": 2}, key="r1")
            new_secret = rolled.pop("secret")
            assert new_secret.startswith("sk_test_") and rolled["id"] != old["id"]
            assert (rolled["type"], rolled["name"], rolled["expiresAt"]) == ("secret", "job", None)
            before = (await c.get(f"/v1/api_keys/{old['id']}")).json()
            assert before["status"] == "active" and before["expiresAt"] is not None
            assert before["expiresAt"] - time.time() <= 2
            assert (await o.get("/v1/products")).status_code == 200  # the overlap
            expired = await _refused_within(o, "/v1/products", 5.0)
            assert time.time() >= before["expiresAt"] - 0.05
            assert _error(expired, 401)["code"] == "api_key_expired"
            after = (await c.get(f"/v1/api_keys/{old['id']}")).json()
            assert after["status"] == "expired" and after["revoked"] is False
        async with _as(api, new_secret) as n:
            assert (await n.get("/v1/products")).status_code == 200
        # Rolled now (the default): the old key stops at once.
        now_rolled = await post(c, f"/v1/api_keys/{rolled['id']}/roll")
        async with _as(api, new_secret) as n:
            await _refused_within(n, "/v1/products", 2.0)
        async with _as(api, now_rolled["secret"]) as n:
            assert (await n.get("/v1/products")).status_code == 200
        for bad in (-1, 30 * 86_400 + 1, "soon", 1.5):
            refused = await c.post(f"/v1/api_keys/{now_rolled['id']}/roll", json={"expiresIn": bad})
            assert _error(refused, 400)["param"] == "expiresIn", bad
        expired_roll = await c.post(f"/v1/api_keys/{old['id']}/roll")
        assert _error(expired_roll, 409)["code"] == "api_key_expired"


async def test_other_accounts_and_modes_keys_are_not_found(api: str, pool: asyncpg.Pool) -> None:
    _, test_key, live_key = await _account(pool)
    _, other_key, _ = await _account(pool)
    async with _as(api, test_key) as c, _as(api, live_key) as live, _as(api, other_key) as other:
        theirs = await post(other, "/v1/api_keys", {})
        live_one = await post(live, "/v1/api_keys", {"restricted": True})
        assert live_one["livemode"] is True and live_one["secret"].startswith("rk_live_")
        for key_id in (theirs["id"], live_one["id"]):
            assert _error(await c.get(f"/v1/api_keys/{key_id}"), 404)["message"] == (
                f"no such API key: '{key_id}'"
            )
            assert _error(await c.post(f"/v1/api_keys/{key_id}/roll"), 404)
            assert _error(await c.delete(f"/v1/api_keys/{key_id}"), 404)
        listed = {k["id"] for k in (await c.get("/v1/api_keys")).json()["data"]}
        assert theirs["id"] not in listed and live_one["id"] not in listed
        # A key itself is never looked up from a URL, nor repeated in the answer.
        secret = theirs["secret"]
        for response in (
            await c.get(f"/v1/api_keys/{secret}"),
            await c.delete(f"/v1/api_keys/{secret}"),
            await other.delete(f"/v1/api_keys/{secret}"),
        ):
            assert secret not in response.text
            _error(response, 404)
    async with _as(api, theirs["secret"]) as still:
        assert (await still.get("/v1/products")).status_code == 200


async def test_bad_bodies_are_refused(api: str, pool: asyncpg.Pool) -> None:
    _, test_key, _ = await _account(pool)
    async with _as(api, test_key) as c:
        for body, param in (
            ({"name": ""}, "name"),
            ({"name": "x" * 101}, "name"),
            ({"name": "a\u0000b"}, "name"),
            ({"restricted": "yes"}, "restricted"),
            ({"livemode": True}, "livemode"),
        ):
            error = _error(await c.post("/v1/api_keys", json=body), 400)
            assert error["param"] == param, (body, error)
        assert len((await c.get("/v1/api_keys")).json()["data"]) == 1
        assert (await c.post("/v1/api_keys")).status_code == 200  # no body: a secret key


async def test_the_usage_path_asks_the_permission_table_too(
    api: str, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """A restricted key holding no permission that allows usage is refused on the hot path."""
    restricted = await post(client, "/v1/api_keys", {"restricted": True})
    await pool.execute("UPDATE api_keys SET permissions = '{}' WHERE id = $1", restricted["id"])
    async with _as(api, restricted["secret"]) as producer:
        for path in ("/v1/usage_records", "/v1/usage_records/batch"):
            error = _error(await producer.post(path, json={}), 403)
            assert error["type"] == "permission_error"
            assert error["message"] == (
                "this restricted key holds no permission, which does not allow"
                f" POST {path}; use a secret key"
            )
