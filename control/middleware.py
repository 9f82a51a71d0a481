"""Control-plane middleware: authentication, key permissions, the key's control-plane rate
limit and POST idempotency, in raw ASGI.

A restricted key is refused (403) here for every route its permissions do not allow
(``domain.permissions``), before its body is read. Only 2xx results are stored (24 h): a
request refused for bad input can be fixed and retried with the same key. A handler may
ask for another body to be stored than the one it answered (``REPLAY_BODY`` in the scope's
state): an API key's secret is shown once, never replayed. Errors become the API's error
body here, so no handler has to.
"""

from __future__ import annotations

import logging
import secrets

from domain.idempotency import ClaimState, body_digest, check_idempotency_key
from domain.permissions import check as check_permission
from domain.services import Services
from infra.asgi import Message, Receive, Scope, Send, header, read_body, send_error
from infra.errors import IdempotencyInFlight, IdempotencyMismatch, VinrError

__all__ = ["PUBLIC_PATHS", "REPLAY_BODY", "ControlMiddleware"]

log = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/docs/oauth2-redirect"}
)

_SEP = b"\x00"

# The scope-state entry in which a handler leaves the body a replay answers instead of its own.
REPLAY_BODY = "idempotent_replay_body"


class ControlMiddleware:
    def __init__(self, app: object, services: Services) -> None:
        self._app = app
        self._s = services
        self._limiter = services.limiter.control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self._app
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await app(scope, receive, send)  # type: ignore[operator]
            return
        try:
            tenant = await self._s.auth.authenticate(header(scope, b"authorization"))
            scope.setdefault("state", {})["tenant"] = tenant
            check_permission(tenant, scope["method"], scope["path"])
            if not self._limiter.take(tenant.key_id):
                await self._limiter.acquire(tenant)  # 429 when the key is over its limit
            if scope["method"] != "POST":
                await app(scope, receive, send)  # type: ignore[operator]
                return
            body = await read_body(receive, self._s.settings.max_body_bytes)
            key = header(scope, b"idempotency-key")
            if key is None:
                await app(scope, _replay(body), send)  # type: ignore[operator]
                return
            check_idempotency_key(key)
        except VinrError as exc:
            await send_error(send, exc)
            return
        await self._idempotent(scope, body, key, tenant.account_id, tenant.livemode, send)

    async def _idempotent(
        self, scope: Scope, body: bytes, key: str, account: str, livemode: bool, send: Send
    ) -> None:
        store = self._s.idempotency
        digest = body_digest(scope["path"].encode() + _SEP + body)
        token = secrets.token_hex(8)
        redis_key = self._s.settings.key("idem", "api", account, "l" if livemode else "t", key)
        try:
            begun = await store.begin(redis_key, digest, token)
            if begun.state is ClaimState.MISMATCH:
                raise IdempotencyMismatch(
                    "this Idempotency-Key was already used with a different request; use a"
                    " new key for a new request",
                    param="Idempotency-Key",
                )
            if begun.state is ClaimState.INFLIGHT:
                raise IdempotencyInFlight(
                    "a request with this Idempotency-Key is still being"
                    " processed; retry in a moment"
                )
        except VinrError as exc:
            await send_error(send, exc)
            return
        if begun.state is ClaimState.DONE:
            status, _, stored = begun.stored.partition(_SEP)
            await send(
                {
                    "type": "http.response.start",
                    "status": int(status),
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(stored)).encode()),
                        (b"idempotent-replayed", b"true"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": stored})
            return
        captured: dict[str, object] = {"status": 500, "body": []}

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))  # type: ignore[attr-defined]
            await send(message)

        try:
            await self._app(scope, _replay(body), capture)  # type: ignore[operator]
        finally:
            status = int(captured["status"])  # type: ignore[call-overload]
            if 200 <= status < 300:
                kept = scope["state"].get(REPLAY_BODY)
                answered = b"".join(captured["body"]) if kept is None else kept  # type: ignore[arg-type]
                response = str(status).encode() + _SEP + answered
                await store.complete(redis_key, digest, token, response)
            else:
                await store.release(redis_key, digest, token)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
