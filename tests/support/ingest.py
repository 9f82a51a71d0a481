"""Shared pieces of the ingest tests (no tests here): extra API instances with their own
settings, a dev broker that can be paused, a TCP proxy that can cut a dependency off,
and read-backs of what reached the topic and the aggregator.

Everything is real: the paused broker is a ``vinr devbroker`` process under SIGSTOP, the
cut-off Redis or Postgres is the real server behind a proxy that stops forwarding.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from domain.accounts import hash_key
from domain.wire import UsageMessage, decode_meter_events, decode_usage, is_meter_message
from infra.devenv import free_port
from infra.kafka import partitions
from infra.settings import Settings
from tests.support.server import LiveServer
from vinr.api import create_app


@contextlib.asynccontextmanager
async def api_instance(settings: Settings, **overrides: Any) -> AsyncIterator[LiveServer]:
    """Another in-process API on a free port, with some settings changed (validated)."""
    changed = Settings(**(settings.model_dump() | overrides))
    async with LiveServer(create_app(changed), free_port()) as server:
        yield server


class PausableBroker:
    """A dev broker of its own, in a process that SIGSTOP freezes and SIGCONT thaws: the
    broker stops answering (connections stay open, requests time out) and comes back at
    the same address."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.address = ""

    def start(self) -> str:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "vinr.cli", "devbroker"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        if self._proc.stdout is None:
            raise RuntimeError("no stdout")
        self.address = self._proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError("the dev broker did not start")
        return self.address

    def pause(self) -> None:
        """Freeze the broker; returns once the kernel reports the process stopped."""
        if self._proc is None:
            return
        os.kill(self._proc.pid, signal.SIGSTOP)
        for _ in range(500):
            with open(f"/proc/{self._proc.pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "T":
                    return
            time.sleep(0.002)
        raise RuntimeError("the dev broker did not stop")

    def resume(self) -> None:
        if self._proc is not None:
            os.kill(self._proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._proc is None:
            return
        self.resume()
        self._proc.terminate()
        self._proc.wait(timeout=10)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None


class TcpProxy:
    """Forwards 127.0.0.1:port to a target. ``cut()`` stops listening and drops every
    connection (the dependency is gone: connects are refused); ``restore()`` listens
    again on the same port. ``pause()`` holds every byte while connections stay open (the
    dependency hangs); ``resume()`` lets them through again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    def pause(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    async def restore(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while chunk := await src.read(65536):
                    await self._flowing.wait()
                    dst.write(chunk)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)


def proxied_url(url: str, port: int) -> str:
    """``url`` (a DSN) pointed at a TcpProxy on 127.0.0.1:``port``, credentials kept."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


async def account_of(pool: asyncpg.Pool, secret_key: str) -> str:
    account: str = await pool.fetchval(
        "SELECT account_id FROM api_keys WHERE key_hash = $1", hash_key(secret_key)
    )
    return account


async def ledger(pool: asyncpg.Pool, item_id: str) -> list[asyncpg.Record]:
    """The aggregator's ledger entries (one per accepted request) for an item."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT l.* FROM usage_ledger l JOIN subscription_items si ON si.pk = l.item_pk"
        " WHERE si.id = $1 ORDER BY l.id",
        item_id,
    )
    return rows


async def summaries(client: httpx.AsyncClient, item_id: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/usage_records/summaries", params={"subscriptionItem": item_id})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def total_usage(client: httpx.AsyncClient, item_id: str) -> int:
    """The running period's total usage."""
    return int((await summaries(client, item_id))[0]["totalUsage"])


async def topic_raw(bootstrap: str, topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every message on a topic as (key, value), read from the beginning to its current end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        meta = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await meta.start()
        try:
            tps = [TopicPartition(topic, p) for p in await partitions(meta, topic)]
        finally:
            await meta.stop()
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[tuple[bytes | None, bytes]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out.extend((m.key, m.value) for m in msgs)
        return out
    finally:
        await consumer.stop()


async def topic_messages(bootstrap: str, topic: str) -> list[UsageMessage]:
    """Every usage message on a topic, read from the beginning to its current end."""
    return [
        m
        for _, value in await topic_raw(bootstrap, topic)
        if not is_meter_message(value)
        for m in decode_usage(value)
    ]


async def meter_messages(bootstrap: str, topic: str) -> list[tuple[bytes | None, list[Any]]]:
    """Every meter-event message on a topic: (key, its events as ``decode_meter_events``)."""
    return [
        (key, decode_meter_events(value))
        for key, value in await topic_raw(bootstrap, topic)
        if is_meter_message(value)
    ]


def error_of(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    assert body["message"], response.text
    return body
