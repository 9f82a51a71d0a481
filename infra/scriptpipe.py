"""A lean Redis connection for the usage hot path's coalesced script calls.

The hot path makes one ``EVALSHA`` per event-loop iteration carrying every claim and
settlement of that iteration (``domain.idempotency.store``). Through redis-py such a call costs
~70 µs of CPU — the arguments packed one by one, a pool lock, a task per write for the
socket timeout, retry and observability hooks — which was ~3 µs of every request. Here a
call is packed in one join, written to one socket shared by every call (replies come back
in order, parsed by hiredis) and costs ~25 µs.

Scope: ``EVALSHA`` of a script this process knows (loaded on ``NOSCRIPT``), nothing else;
everything else stays on redis-py. ``redis://``, ``rediss://`` and ``unix://`` URLs with
username, password and db, as redis-py reads them.

Failures: a call that cannot connect, a connection that breaks and a reply later than
``timeout_s`` fail every call in flight with redis-py's ``ConnectionError`` /
``TimeoutError`` (both ``RedisError``: the hot path answers 503) and drop the connection;
the next call connects again. Calls are never retried here: a claim whose reply was lost
may have been applied, and its request's retry is the client's to make.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import ssl
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["ScriptPipe"]

Arg = bytes | str | int


def _pack(parts: Sequence[Arg]) -> bytes:
    """One RESP command: ``*n`` then ``$len`` + bytes per part."""
    encoded = [
        p if isinstance(p, bytes) else (p.encode() if isinstance(p, str) else b"%d" % p)
        for p in parts
    ]
    return b"*%d\r\n" % len(encoded) + b"".join([b"$%d\r\n%s\r\n" % (len(p), p) for p in encoded])


class _Protocol(asyncio.Protocol):
    """One socket; callers' futures queue in the order their commands were written."""

    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ResponseError)
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not False:
                future = self._waiting.popleft()
                if future.done():
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            self.fail(RedisConnectionError(f"bad reply from Redis: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail_waiting(
            RedisConnectionError(f"connection to Redis lost{f': {exc}' if exc else ''}")
        )

    def call(self, command: bytes) -> asyncio.Future[Any]:
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection to Redis closed")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._transport.write(command)
        return future

    def fail(self, error: Exception) -> None:
        """Drop the connection, failing every call in flight with ``error``."""
        self.closed = True
        self._fail_waiting(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail_waiting(self, error: Exception) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(error)


class ScriptPipe:
    CLIENT_NAME = b"vinr-ingest-pipe"  # as CLIENT LIST shows the connection

    def __init__(self, url: str, *, timeout_s: float, connect_timeout_s: float) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unsupported Redis URL scheme {parts.scheme!r}")
        query = parse_qs(parts.query)
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "localhost"
        self._port = parts.port or 6379
        self._ssl = parts.scheme == "rediss"
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        db = query.get("db", [""])[0] or (parts.path.lstrip("/") if not self._unix else "")
        self._db = int(db or 0)
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._sources: dict[bytes, bytes] = {}

    def register(self, source: str) -> bytes:
        """The script's SHA1, the name ``evalsha`` takes."""
        sha = hashlib.sha1(source.encode()).hexdigest().encode()
        self._sources[sha] = source.encode()
        return sha

    async def evalsha(self, sha: bytes, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run a registered script. Raises RedisError (ConnectionError, TimeoutError,
        ResponseError for a script error)."""
        command = _pack([b"EVALSHA", sha, len(keys), *keys, *args])
        try:
            return await self._call(command)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        await self._call(_pack([b"SCRIPT", b"LOAD", self._sources[sha]]))
        return await self._call(command)

    async def close(self) -> None:
        if self._protocol is not None:
            protocol, self._protocol = self._protocol, None
            protocol.fail(RedisConnectionError("closed"))

    async def _call(self, command: bytes) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        future = protocol.call(command)
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            error = RedisTimeoutError(f"no reply from Redis within {self._timeout_s} s")
            protocol.fail(error)
            raise error from None

    async def _connect(self) -> _Protocol:
        """One connection attempt shared by every caller that needs it meanwhile."""
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._open())
        connecting = self._connecting
        try:
            return await asyncio.shield(connecting)
        finally:
            if connecting.done() and self._connecting is connecting:
                self._connecting = None

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if self._unix is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, self._unix)
                else:
                    _, protocol = await loop.create_connection(
                        _Protocol,
                        self._host,
                        self._port,
                        ssl=ssl.create_default_context() if self._ssl else None,
                    )
                setup: list[list[Arg]] = []
                if self._password is not None:
                    setup.append(
                        [b"AUTH", *([self._username] if self._username else []), self._password]
                    )
                if self._db:
                    setup.append([b"SELECT", self._db])
                setup.append([b"CLIENT", b"SETNAME", self.CLIENT_NAME])
                try:
                    for command in setup:
                        await protocol.call(_pack(command))
                except BaseException:
                    protocol.fail(RedisConnectionError("connection set-up failed"))
                    raise
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {exc or 'timed out'}") from exc
        self._protocol = protocol
        return protocol
