"""Where webhooks may go, through the API and the dispatcher on real services.

No test here sends anything to a non-loopback address: refused literals are refused before
any connection, names are answered by a stub resolver, and a delivery to a checked public
address goes to an in-process transport that records it instead of connecting.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from dispatcher.worker import Dispatcher
from domain.accounts import create_account
from domain.store import webhooks as endpoints
from domain.tenant import Tenant
from infra.asgi import read_body
from infra.devenv import free_port
from infra.ids import new_id, new_secret
from infra.settings import Settings
from tests.support.api import post
from tests.support.server import LiveServer
from tests.support.webhooks import Receiver, attempts, create_customers, deliveries, endpoint_for


@pytest.fixture
async def live(api: str, pool: asyncpg.Pool) -> AsyncIterator[tuple[str, httpx.AsyncClient]]:
    """A new account's id and a client holding its live key."""
    async with pool.acquire() as conn:
        account_id, _, live_key = await create_account(conn, f"live-{uuid.uuid4().hex[:6]}")
    async with httpx.AsyncClient(
        base_url=api, timeout=30, headers={"Authorization": f"Bearer {live_key}"}
    ) as c:
        yield account_id, c


def assert_url_refused(response: httpx.Response, words: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "url", error
    assert words in error["message"], error
    assert "public addresses" in error["message"] and "local receivers" in error["message"]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://10.0.0.5/hook", "10.0.0.5 is a private address"),
        ("http://169.254.169.254/", "169.254.169.254 is a link-local address"),
        ("http://127.0.0.1:9/hook", "127.0.0.1 is a loopback address"),
        ("http://[::ffff:192.168.0.1]/", "192.168.0.1 is a private address"),
        ("https://user:pw@93.184.216.34/", "user name or password"),
    ],
)
async def test_a_live_endpoint_to_a_local_address_is_refused(
    url: str, words: str, live: tuple[str, httpx.AsyncClient]
) -> None:
    _, client = live
    refused = await client.post("/v1/webhook_endpoints", json={"url": url, "enabledEvents": ["*"]})
    assert_url_refused(refused, words)
    listed = (await client.get("/v1/webhook_endpoints")).json()
    assert listed["data"] == [], "nothing was created"


async def test_a_live_endpoint_cannot_be_moved_to_a_local_address(
    live: tuple[str, httpx.AsyncClient],
) -> None:
    _, client = live
    public = "https://93.184.216.34/hook"
    endpoint = await endpoint_for(client, public)
    assert endpoint["url"] == public and endpoint["livemode"] is True
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    for url, words in (
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.5/hook", "private"),
    ):
        assert_url_refused(await client.post(path, json={"url": url}), words)
    assert (await client.get(path)).json()["url"] == public


async def test_a_sandbox_endpoint_may_use_a_local_receiver_but_not_link_local(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    refused = await client.post(
        "/v1/webhook_endpoints",
        json={"url": "http://169.254.169.254/", "enabledEvents": ["*"]},
    )
    assert_url_refused(refused, "link-local")

    receiver = Receiver()
    async with LiveServer(receiver, free_port()) as hook:
        endpoint = await endpoint_for(client, hook.url + "/hooks")
        private = await post(
            client,
            f"/v1/webhook_endpoints/{endpoint['id']}",
            {"url": "http://10.0.0.5/hook", "status": "disabled"},
        )
        assert private["url"] == "http://10.0.0.5/hook"
        back = await post(
            client,
            f"/v1/webhook_endpoints/{endpoint['id']}",
            {"url": hook.url + "/hooks", "status": "enabled"},
        )
        assert back["url"] == hook.url + "/hooks"
        await create_customers(client, 1)
        async with Dispatcher(settings, pool=pool) as dispatcher:
            await tick_until(dispatcher, pool, endpoint["id"], attempts_at_least=1)
        (row,) = await deliveries(pool, endpoint["id"])
        assert row["status"] == "delivered"
    assert [a.status for a in receiver.arrivals] == [200]


async def tick_until(
    dispatcher: Dispatcher, pool: asyncpg.Pool, endpoint_id: str, *, attempts_at_least: int
) -> asyncpg.Record:
    """Tick until the endpoint's one delivery has had that many attempts (other tests'
    leftovers may be claimed first)."""
    for _ in range(50):
        rows = await deliveries(pool, endpoint_id)
        if rows and rows[0]["attempts"] >= attempts_at_least:
            return rows[0]
        await dispatcher.tick()
    raise AssertionError(f"no attempt {attempts_at_least} on {endpoint_id}")


class StubResolver:
    """A DNS that answers from a table the test changes; unknown names do not resolve."""

    def __init__(self) -> None:
        self.table: dict[str, list[str]] = {}
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append((host, port))
        if host not in self.table:
            raise OSError(f"{host}: name not known")
        return self.table[host]


async def test_a_target_that_re_resolves_to_a_private_address_is_not_sent(
    live: tuple[str, httpx.AsyncClient], pool: asyncpg.Pool, settings: Settings
) -> None:
    account_id, client = live
    host = f"hooks-{uuid.uuid4().hex[:8]}.example.test"
    # Accepted while the name resolved to a public address (stored as the API would).
    endpoint = await endpoints.insert_endpoint(
        pool,
        Tenant(account_id, True),
        endpoint_id=new_id("we"),
        url=f"https://{host}:8443/in?x=1",
        enabled_events=["customer.created"],
        secret=new_secret("whsec"),
        description=None,
        created=0,
    )
    resolver = StubResolver()
    resolver.table[host] = ["10.0.0.1"]
    sent: list[httpx.Request] = []

    class Answer(httpx.AsyncByteStream):
        """A streamed answer, as a real connection gives (not read in advance)."""

        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"ok"

    def transport(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, stream=Answer())

    await create_customers(client, 1)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(transport)) as recording,
        Dispatcher(
            settings, pool=pool, client=recording, resolver=resolver, retry_delay_s=lambda n: 0
        ) as dispatcher,
    ):
        row = await tick_until(dispatcher, pool, endpoint["id"], attempts_at_least=1)
        assert row["status"] == "pending" and row["last_status_code"] is None
        assert "10.0.0.1 is a private address" in row["last_error"]
        (first,) = await attempts(pool, row["id"])
        assert first["status_code"] is None
        assert first["error"].startswith(f"target refused: {host} resolves to 10.0.0.1")
        assert (host, 8443) in resolver.asked
        assert [r for r in sent if r.headers.get("host", "").startswith(host)] == []
        assert [r for r in sent if r.url.host == "10.0.0.1"] == []

        # The name points at a public address again: the retry goes to that address.
        resolver.table[host] = ["93.184.216.34", "10.0.0.1"]
        row = await tick_until(dispatcher, pool, endpoint["id"], attempts_at_least=2)
        assert row["status"] == "pending", "one private address among them is enough to refuse"
        resolver.table[host] = ["93.184.216.34"]
        row = await tick_until(dispatcher, pool, endpoint["id"], attempts_at_least=3)
    assert row["status"] == "delivered"
    (request,) = [r for r in sent if r.headers.get("host") == f"{host}:8443"]
    assert (request.url.host, request.url.port, request.url.path) == ("93.184.216.34", 8443, "/in")
    assert request.url.query == b"x=1"
    assert request.extensions["sni_hostname"] == host, "TLS still checks the name"
    assert request.headers["connection"] == "close", "no reuse for another name"


async def test_a_redirect_is_a_failed_delivery_and_is_not_followed(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    elsewhere = Receiver()

    async def redirecting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive, 1 << 20)
        location = f"{other.url}/stolen".encode()
        await send(
            {"type": "http.response.start", "status": 302, "headers": [(b"location", location)]}
        )
        await send({"type": "http.response.body", "body": b""})

    async with (
        LiveServer(elsewhere, free_port()) as other,
        LiveServer(redirecting, free_port()) as hook,
    ):
        endpoint = await endpoint_for(client, hook.url + "/hooks")
        await create_customers(client, 1)
        async with Dispatcher(settings, pool=pool) as dispatcher:
            row = await tick_until(dispatcher, pool, endpoint["id"], attempts_at_least=1)
    assert row["status"] == "pending" and row["last_status_code"] == 302
    assert row["last_error"] == f"redirect to '{other.url}/stolen' not followed"
    (first,) = await attempts(pool, row["id"])
    assert first["status_code"] == 302
    assert elsewhere.arrivals == [], "the redirect was not followed"


class EndlessBody:
    """Answers 200 with a body that never ends, until the client hangs up."""

    def __init__(self) -> None:
        self.sent = 0
        self.requests = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await read_body(receive, 1 << 20)
        self.requests += 1
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        while not gone.is_set():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.sent += len(chunk)
            await asyncio.sleep(0)
        watcher.cancel()


async def test_the_answer_is_read_only_up_to_the_cap(
    client: httpx.AsyncClient, pool: asyncpg.Pool, settings: Settings
) -> None:
    receiver = EndlessBody()
    short = settings.model_copy(update={"webhook_timeout_s": 5.0})
    async with LiveServer(receiver, free_port()) as hook:
        endpoint = await endpoint_for(client, hook.url + "/hooks")
        await create_customers(client, 1)
        async with Dispatcher(short, pool=pool) as dispatcher:
            row = await tick_until(dispatcher, pool, endpoint["id"], attempts_at_least=1)
    # An endless answer read to its end would have timed out instead.
    assert row["status"] == "delivered" and row["last_status_code"] == 200
    assert receiver.requests == 1
    cap = settings.webhook_max_response_bytes
    assert cap == 64 * 1024
    assert cap <= receiver.sent < 64 * 1024 * 1024, receiver.sent
