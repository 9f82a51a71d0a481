"""Small raw-ASGI helpers shared by the hot path and the control-plane middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson

from infra.errors import PayloadTooLarge, VinrError

__all__ = ["Receive", "Scope", "Send", "header", "read_body", "send_error", "send_json"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a (lower-case) request header."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


async def read_body(receive: Receive, limit: int, first: Message | None = None) -> bytes:
    """The whole request body; raises PayloadTooLarge past ``limit`` bytes. ``first``: the
    first message, when the caller has received it already."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive() if first is None else first
        first = None
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes; split it up")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def send_json(
    send: Send, status: int, body: bytes, headers: Iterable[tuple[str, str]] = ()
) -> None:
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    raw_headers.extend((k.lower().encode(), v.encode()) for k, v in headers)
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: VinrError) -> None:
    await send_json(send, error.status, orjson.dumps(error.body()), error.headers().items())
