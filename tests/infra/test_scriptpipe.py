"""The hot path's lean Redis connection against the real Redis: scripts, pipelining in
order, errors, NOSCRIPT, db selection, a lost connection, a silent server, a refused one."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from infra.devenv import free_port
from infra.scriptpipe import ScriptPipe
from infra.settings import Settings
from tests.support.ingest import TcpProxy

_ECHO = "return {KEYS[1], ARGV[1], #KEYS, #ARGV}"
_GET = "return redis.call('GET', KEYS[1])"
_FAIL = "return redis.error_reply('ERR wanted: ' .. ARGV[1])"


def _with_db(url: str, db: int) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@pytest.fixture
async def pipe(settings: Settings) -> AsyncIterator[ScriptPipe]:
    p = ScriptPipe(settings.redis_url.get_secret_value(), timeout_s=2, connect_timeout_s=1)
    yield p
    await p.close()


async def test_pipelined_calls_come_back_each_to_its_caller(pipe: ScriptPipe) -> None:
    sha = pipe.register(_ECHO)
    results = await asyncio.gather(
        *(pipe.evalsha(sha, [f"k{i}", "x"], [i, "a|b\n", b"\x00"]) for i in range(200))
    )
    assert results == [[f"k{i}".encode(), str(i).encode(), 2, 3] for i in range(200)]


async def test_a_script_error_fails_only_its_call(pipe: ScriptPipe) -> None:
    fail, echo = pipe.register(_FAIL), pipe.register(_ECHO)
    outcomes = await asyncio.gather(
        pipe.evalsha(echo, ["a"], [1]),
        pipe.evalsha(fail, [], ["x"]),
        pipe.evalsha(echo, ["b"], [2]),
        return_exceptions=True,
    )
    assert outcomes[0] == [b"a", b"1", 1, 1] and outcomes[2] == [b"b", b"2", 1, 1]
    assert isinstance(outcomes[1], ResponseError) and "wanted: x" in str(outcomes[1])


async def test_an_unknown_script_is_loaded_once_and_run(
    settings: Settings, pipe: ScriptPipe
) -> None:
    source = f"return '{uuid.uuid4().hex}'"  # a script Redis has never seen
    sha = pipe.register(source)
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        assert await redis.script_exists(sha.decode()) == [False]
        assert await pipe.evalsha(sha, [], []) == source.split("'")[1].encode()
        assert await redis.script_exists(sha.decode()) == [True]
    finally:
        await redis.aclose()


async def test_the_url_database_is_selected(settings: Settings) -> None:
    url = _with_db(settings.redis_url.get_secret_value(), 7)
    key = f"pipe-db-{uuid.uuid4().hex}"
    redis = Redis.from_url(url)
    pipe = ScriptPipe(url, timeout_s=2, connect_timeout_s=1)
    try:
        await redis.set(key, b"in db 7", ex=60)
        assert await pipe.evalsha(pipe.register(_GET), [key], []) == b"in db 7"
    finally:
        await pipe.close()
        await redis.delete(key)
        await redis.aclose()


async def test_a_wrong_password_is_a_redis_error(settings: Settings) -> None:
    parts = urlsplit(settings.redis_url.get_secret_value())
    url = urlunsplit(parts._replace(netloc=f":wrong@{parts.hostname}:{parts.port or 6379}"))
    pipe = ScriptPipe(url, timeout_s=2, connect_timeout_s=1)
    try:
        with pytest.raises(RedisError, match=r"AUTH|auth|password"):
            await pipe.evalsha(pipe.register(_ECHO), ["a"], [1])
    finally:
        await pipe.close()


async def test_nobody_listening_is_a_connection_error_at_once() -> None:
    pipe = ScriptPipe(f"redis://127.0.0.1:{free_port()}/0", timeout_s=2, connect_timeout_s=1)
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        await pipe.evalsha(pipe.register(_ECHO), ["a"], [1])
    assert time.monotonic() - started < 1


async def test_a_killed_connection_fails_its_calls_and_the_next_call_reconnects(
    settings: Settings, pipe: ScriptPipe
) -> None:
    sha = pipe.register(_ECHO)
    assert await pipe.evalsha(sha, ["a"], [1]) == [b"a", b"1", 1, 1]
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        clients = await redis.client_list()
        mine = [c for c in clients if c["name"] == ScriptPipe.CLIENT_NAME.decode()]
        assert mine
        for client in mine:
            await redis.client_kill(client["addr"])
    finally:
        await redis.aclose()
    await asyncio.sleep(0.05)  # the close reaches the pipe
    assert await pipe.evalsha(sha, ["b"], [2]) == [b"b", b"2", 1, 1]


async def test_a_silent_redis_times_out_every_call_in_flight_then_recovers(
    settings: Settings,
) -> None:
    target = urlsplit(settings.redis_url.get_secret_value())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.restore()
    url = urlunsplit(target._replace(netloc=f"127.0.0.1:{proxy.port}"))
    pipe = ScriptPipe(url, timeout_s=0.5, connect_timeout_s=0.5)
    sha = pipe.register(_ECHO)
    try:
        assert await pipe.evalsha(sha, ["a"], [1]) == [b"a", b"1", 1, 1]
        proxy.pause()  # connections stay open, nothing is forwarded
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(pipe.evalsha(sha, ["k"], [i]) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, RedisTimeoutError) for o in outcomes), outcomes
        assert time.monotonic() - started < 1.5
        proxy.resume()
        assert await pipe.evalsha(sha, ["c"], [3]) == [b"c", b"3", 1, 1]
    finally:
        await pipe.close()
        await proxy.cut()
