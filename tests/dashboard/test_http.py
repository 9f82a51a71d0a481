"""The Dashboard's routes over plain HTTP: login and sessions, CSRF and same-origin checks,
security headers, revocation ending a session, the control-plane rate limit, and hostile
input answered 4xx (never 5xx) with nothing changed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import httpx
import pytest
from redis.asyncio import Redis

from domain.accounts import create_account, create_key
from infra.settings import Settings
from tests.support.api import eventually, metered_price, post, subscribe
from tests.support.dashboard import Session, csrf_of, dashboard_client, log_in
from tests.support.limits import limited_account

Sessions = Callable[[str], Awaitable[Session]]


def _cookie(response: httpx.Response, name: str) -> str:
    values = [v for v in response.headers.get_list("set-cookie") if v.startswith(f"{name}=")]
    assert len(values) == 1, response.headers.get_list("set-cookie")
    return values[0]


async def test_pages_carry_the_security_headers(
    sessions: Sessions, api: str, secret_key: str
) -> None:
    s = await sessions(secret_key)
    for path in ("/dashboard/login", "/dashboard/subscriptions", "/dashboard/nowhere"):
        answer = await s.client.get(path)
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["cache-control"] == "no-store"
        assert "<script>" not in answer.text and " style=" not in answer.text
    css = await s.client.get("/dashboard/static/dashboard.css")
    js = await s.client.get("/dashboard/static/dashboard.js")
    assert css.headers["content-type"].startswith("text/css") and "body" in css.text
    assert js.headers["content-type"].startswith("text/javascript") and "fetch(" in js.text


async def test_a_secret_key_logs_in_and_the_cookie_holds_no_key(
    api: str, secret_key: str, settings: Settings
) -> None:
    async with dashboard_client(api) as client:
        answer = await log_in(client, secret_key)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/dashboard/subscriptions"
        cookie = _cookie(answer, "vinr_session")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie
        assert secret_key not in cookie and secret_key[8:] not in cookie
        page = await client.get("/dashboard/subscriptions")
        assert page.status_code == 200
        assert "Test mode" in page.text and 'role="note"' in page.text
        # The server keeps the session; no value in Redis holds the key.
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        try:
            keys = [k async for k in redis.scan_iter(match=settings.key("dashboard", "*"))]
            assert keys
            values = [await redis.get(k) for k in keys]
        finally:
            await redis.aclose()
        assert all(secret_key.encode() not in (v or b"") for v in values)


async def test_a_live_key_sees_live_mode_without_the_test_helpers(
    sessions: Sessions, api: str, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        _, test_key, live_key = await create_account(conn, f"dash-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"Bearer {test_key}"}
    ) as api_client:
        price = await metered_price(api_client)
        sandbox_sub = await subscribe(api_client, price["id"])
    s = await sessions(live_key)
    page = await s.client.get("/dashboard/subscriptions")
    assert "Live mode" in page.text and 'role="note"' not in page.text
    assert sandbox_sub["id"] not in page.text  # the sandbox's objects are not live mode's
    # The sandbox's subscription does not exist in live mode, and test helpers are refused.
    missing = await s.client.get(f"/dashboard/subscriptions/{sandbox_sub['id']}")
    assert missing.status_code == 404
    refused = await s.post(f"/dashboard/subscriptions/{sandbox_sub['id']}/advance_period")
    assert refused.status_code == 404
    assert "sandbox only" in refused.text


async def test_login_refusals_say_why(
    api: str, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    restricted = await post(client, "/v1/api_keys", {"restricted": True})
    revoked = await post(client, "/v1/api_keys", {})
    await client.delete(f"/v1/api_keys/{revoked['id']}")
    cases = [
        ("sk_test_" + "y" * 43, 401, "invalid API key provided"),
        (restricted["secret"], 403, "is a restricted key"),
        (revoked["secret"], 401, "revoked"),
        ("", 400, "Enter a secret key"),
        ("hello", 401, "not an API key"),
    ]
    for key, status, says in cases:
        async with dashboard_client(api) as fresh:
            answer = await log_in(fresh, key)
            assert answer.status_code == status, (key[:10], answer.text)
            assert says in answer.text
            assert "vinr_session=" not in " ".join(answer.headers.get_list("set-cookie"))
            if len(key) > 20:
                assert key[12:] not in answer.text  # a key is named by its hint only


async def test_the_login_form_is_csrf_protected(api: str, secret_key: str) -> None:
    async with dashboard_client(api) as client:
        page = await client.get("/dashboard/login")
        token = csrf_of(page.text)
        origin = str(client.base_url).rstrip("/")
        forged = await client.post(
            "/dashboard/login",
            data={"csrf": "forged", "key": secret_key},
            headers={"Origin": origin},
        )
        assert forged.status_code == 403
        cross = await client.post(
            "/dashboard/login",
            data={"csrf": token, "key": secret_key},
            headers={"Origin": "https://evil.example"},
        )
        assert cross.status_code == 403
        assert "vinr_session=" not in " ".join(cross.headers.get_list("set-cookie"))
    async with dashboard_client(api) as cookieless:  # the token without its cookie
        refused = await cookieless.post(
            "/dashboard/login", data={"csrf": token, "key": secret_key}, headers={"Origin": origin}
        )
        assert refused.status_code == 403


async def test_a_post_without_the_right_token_or_from_elsewhere_changes_nothing(
    sessions: Sessions, api: str, client: httpx.AsyncClient, secret_key: str
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    s = await sessions(secret_key)
    path = f"/dashboard/subscriptions/{sub['id']}/advance_period"
    origin = str(s.client.base_url).rstrip("/")
    attempts = [
        await s.client.post(path, data={}, headers={"Origin": origin}),
        await s.client.post(path, data={"csrf": "wrong"}, headers={"Origin": origin}),
        await s.client.post(path, data={"csrf": s.csrf + "x"}, headers={"Origin": origin}),
        await s.client.post(path, data={"csrf": s.csrf}, headers={"Origin": "http://evil.test"}),
        await s.client.post(path, data={"csrf": s.csrf}, headers={"Origin": "null"}),
        await s.client.post(path, data={"csrf": s.csrf}, headers={"Referer": "http://evil.test/x"}),
    ]
    assert [a.status_code for a in attempts] == [403] * len(attempts)
    assert all("security token" in a.text or "another site" in a.text for a in attempts)
    after = (await client.get(f"/v1/subscriptions/{sub['id']}")).json()
    assert after["testClock"] is None and after["currentPeriodEnd"] == sub["currentPeriodEnd"]
    # Another session's token is no good either.
    other = await sessions(secret_key)
    assert (await s.post(path, {"csrf": other.csrf})).status_code == 403
    # The right token, from this site: done.
    done = await s.post(path)
    assert done.status_code == 303 and done.headers["location"].endswith("?done=advanced")
    assert (await client.get(f"/v1/subscriptions/{sub['id']}")).json()["testClock"] is not None


async def test_without_a_session_pages_send_to_login_and_actions_are_refused(
    api: str, client: httpx.AsyncClient
) -> None:
    price = await metered_price(client)
    sub = await subscribe(client, price["id"])
    async with dashboard_client(api) as anonymous:
        page = await anonymous.get("/dashboard/subscriptions")
        assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
        live = await anonymous.get(f"/dashboard/subscriptions/{sub['id']}/live")
        assert live.status_code == 401
        anonymous.cookies.set("vinr_session", "made-up", path="/dashboard")
        action = await anonymous.post(
            f"/dashboard/subscriptions/{sub['id']}/advance_period", data={"csrf": "x"}
        )
        assert action.status_code == 401
    assert (await client.get(f"/v1/subscriptions/{sub['id']}")).json()["testClock"] is None


async def test_a_revoked_key_ends_its_sessions(
    sessions: Sessions, api: str, pool: asyncpg.Pool
) -> None:
    async with pool.acquire() as conn:
        account, first, _ = await create_account(conn, f"dash-{uuid.uuid4().hex[:6]}")
        second = await create_key(conn, account, livemode=False)
    s = await sessions(second.secret)
    assert (await s.client.get("/dashboard/customers")).status_code == 200
    async with httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"Bearer {first}"}
    ) as owner:
        assert (await owner.delete(f"/v1/api_keys/{second.key.id}")).status_code == 200

    async def ended() -> httpx.Response | None:
        answer = await s.client.get("/dashboard/customers")
        return answer if answer.status_code == 401 else None

    answer = await eventually(ended, timeout_s=5)  # revocation reaches a process within 2 s
    assert "Your session ended: this API key was revoked" in answer.text
    assert "vinr_session=;" in " ".join(answer.headers.get_list("set-cookie"))
    assert (await s.client.get("/dashboard/customers")).status_code == 303  # to the login


async def test_log_out(sessions: Sessions, api: str, secret_key: str) -> None:
    s = await sessions(secret_key)
    old = s.client.cookies.get("vinr_session")
    answer = await s.post("/dashboard/logout")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/dashboard/login")
    assert "vinr_session=;" in _cookie(answer, "vinr_session") + ";"
    async with dashboard_client(api) as replay:
        replay.cookies.set("vinr_session", old or "", path="/dashboard")
        assert (await replay.get("/dashboard/subscriptions")).status_code == 303


async def test_dashboard_requests_count_against_the_keys_control_limit(
    api: str, pool: asyncpg.Pool
) -> None:
    _, key = await limited_account(pool, control_rate=1, control_burst=3)
    async with dashboard_client(api) as client:
        assert (await log_in(client, key)).status_code == 303  # the login is one request
        statuses = [(await client.get("/dashboard/customers")).status_code for _ in range(6)]
    assert 200 in statuses and statuses[-1] == 429, statuses
    assert statuses.index(429) <= 3


@pytest.mark.parametrize(
    ("method", "path", "form", "status"),
    [
        ("GET", "/dashboard/subscriptions/sub_missing", None, 404),
        ("GET", "/dashboard/subscriptions/sub%00x", None, 404),
        ("GET", "/dashboard/subscriptions/" + "a" * 300, None, 404),
        ("GET", "/dashboard/invoices/in_missing", None, 404),
        ("GET", "/dashboard/events/evt_missing", None, 404),
        ("GET", "/dashboard/nothing-here", None, 404),
        ("GET", "/dashboard/subscriptions?after=sub_missing", None, 400),
        ("GET", "/dashboard/subscriptions?after=not%20an%20id", None, 400),
        ("GET", "/dashboard/subscriptions?after=%ff", None, 400),
        ("GET", "/dashboard/subscriptions?customer=%00", None, 400),
        ("GET", "/dashboard/invoices?status=bogus", None, 400),
        ("GET", "/dashboard/events?type=bogus", None, 400),
        ("GET", "/dashboard/dead_letters?reason=bogus", None, 400),
        ("GET", "/dashboard/customers?after=" + "b" * 400, None, 400),
        ("DELETE", "/dashboard/subscriptions", None, 405),
        ("PUT", "/dashboard/login", None, 405),
        ("GET", "/dashboard/logout", None, 405),
        ("POST", "/dashboard/subscriptions/sub_missing/advance_period", {}, 404),
        ("POST", "/dashboard/webhooks/resend", {}, 400),
        ("POST", "/dashboard/webhooks/resend", {"event": "evt_x", "endpoint": "we_x"}, 404),
        ("POST", "/dashboard/webhooks/resend", {"event": "a b", "endpoint": "we_x"}, 400),
        ("POST", "/dashboard/api_keys/key_missing/revoke", {}, 404),
        ("POST", "/dashboard/api_keys/sk_test_abc/revoke", {}, 400),
        ("POST", "/dashboard/api_keys", {"name": "n" * 101}, 400),
        ("POST", "/dashboard/api_keys", {"name": "a\x00b"}, 400),
    ],
)
async def test_bad_input_is_a_4xx_that_says_what_to_fix(
    sessions: Sessions,
    api: str,
    secret_key: str,
    method: str,
    path: str,
    form: dict[str, str] | None,
    status: int,
) -> None:
    s = await sessions(secret_key)
    if form is not None:
        answer = await s.post(path, form)
    else:
        answer = await s.client.request(method, path)
    assert answer.status_code == status, answer.text[:500]
    assert 'role="alert"' in answer.text


async def test_bodies_that_are_no_forms_are_refused(
    sessions: Sessions, api: str, secret_key: str
) -> None:
    s = await sessions(secret_key)
    origin = {"Origin": str(s.client.base_url).rstrip("/")}
    path = "/dashboard/api_keys"
    as_json = await s.client.post(
        path, json={"csrf": s.csrf}, headers={**origin, "content-type": "application/json"}
    )
    assert as_json.status_code == 400
    assert "application/x-www-form-urlencoded" in as_json.text
    bad_utf8 = await s.client.post(
        path,
        content=b"csrf=" + s.csrf.encode() + b"&name=%ff%fe",
        headers={**origin, "content-type": "application/x-www-form-urlencoded"},
    )
    assert bad_utf8.status_code == 400
    huge = await s.client.post(
        path,
        content=b"csrf=" + s.csrf.encode() + b"&name=" + b"x" * 100_000,
        headers={**origin, "content-type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 413
    keys = (await s.client.get("/dashboard/api_keys")).text
    assert "rk_test_" not in keys  # no key was made by any of them


async def test_a_restricted_key_made_here_is_shown_once_and_can_be_revoked(
    sessions: Sessions, api: str, client: httpx.AsyncClient, secret_key: str
) -> None:
    s = await sessions(secret_key)
    made = await s.post("/dashboard/api_keys", {"name": "gateway"})
    assert made.status_code == 200
    secret = made.text.split("data-secret")[0].rsplit('value="', 1)[1].split('"')[0]
    assert secret.startswith("rk_test_")
    listing = await s.client.get("/dashboard/api_keys")
    assert secret not in listing.text and "gateway" in listing.text
    # It works as a producer's key, and only as one.
    async with httpx.AsyncClient(
        base_url=api, headers={"Authorization": f"Bearer {secret}"}
    ) as producer:
        assert (await producer.get("/v1/customers")).status_code == 403
    key = next(
        k for k in (await client.get("/v1/api_keys")).json()["data"] if k["name"] == "gateway"
    )
    revoked = await s.post(f"/dashboard/api_keys/{key['id']}/revoke")
    assert revoked.status_code == 303
    assert (await client.get(f"/v1/api_keys/{key['id']}")).json()["status"] == "revoked"
    # The session's own key is the last secret key of the sandbox: refused, as on the API.
    own = next(
        k for k in (await client.get("/v1/api_keys")).json()["data"] if k["type"] == "secret"
    )
    kept = await s.post(f"/dashboard/api_keys/{own['id']}/revoke")
    assert kept.status_code == 409 and "last secret key" in kept.text
    await asyncio.sleep(0)
