"""A lean HTTP/1.1 load generator, run as its own process by ``bench/ingest.py``.

    python -m bench._ingest_load '<json spec>'   → one JSON result line on stdout

Keep-alive connections over raw asyncio protocols (uvloop), one request at a time per
connection (no pipelining). Two modes:

- closed loop (``rate`` unset): every connection sends its next request as soon as the
  previous answer arrived — the throughput ceiling for that many connections;
- open loop (``rate`` set): requests are scheduled at a fixed rate whatever the server
  does; latency is measured from the *scheduled* send time, so a stalled server is charged
  for the queueing it causes (no coordinated omission).

Each request gets a unique ``Idempotency-Key`` (``{prefix}-{connection}-{n}``) when
``key_prefix`` is given, as a real client would send.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from typing import Any

import orjson

_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"content-length:"


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run, index: int) -> None:
        self.run = run
        self.index = index
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.busy = False
        self.sent = 0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.run.lost += 1

    def send(self, started: float) -> None:
        if self.transport is None:
            return
        self.busy = True
        self.sent_at = started
        self.sent += 1
        self.transport.write(self.run.request(self.index, self.sent))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer
        buf += data
        while True:
            end = buf.find(_HEADER_END)
            if end < 0:
                return
            head = bytes(buf[:end]).lower()
            at = head.find(_CONTENT_LENGTH)
            length = 0
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + len(_CONTENT_LENGTH) : stop if stop >= 0 else None])
            total = end + 4 + length
            if len(buf) < total:
                return
            status = int(head[9:12])
            del buf[:total]
            self.busy = False
            self.run.done(self, status)


class _Run:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.host: str = spec["host"]
        self.port: int = spec["port"]
        self.connections: int = spec["connections"]
        self.duration_s: float = spec["duration_s"]
        self.warmup_s: float = spec.get("warmup_s", 1.0)
        self.rate: float | None = spec.get("rate")
        self.key_prefix: str | None = spec.get("key_prefix")
        body = spec["body"].encode()
        headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
        self._head = (
            f"POST {spec['path']} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
            f"Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
        ).encode()
        self._body = b"\r\n" + body
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.measuring = False
        self.stopping = False
        self.completed = 0
        self.lost = 0
        self.idle: deque[_Connection] = deque()
        self.backlog: deque[float] = deque()

    def request(self, index: int, n: int) -> bytes:
        if self.key_prefix is None:
            return self._head + self._body
        return (
            self._head + f"Idempotency-Key: {self.key_prefix}-{index}-{n}\r\n".encode() + self._body
        )

    def done(self, conn: _Connection, status: int) -> None:
        now = time.perf_counter()
        if self.measuring:
            self.completed += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.latencies.append(now - conn.sent_at)
        if self.stopping:
            return
        if self.rate is None:
            conn.send(now)
        elif self.backlog:
            conn.send(self.backlog.popleft())
        else:
            self.idle.append(conn)

    async def _schedule(self, until: float) -> None:
        """Open loop: release request i at start + i / rate."""
        assert self.rate is not None
        interval = 1.0 / self.rate
        start = time.perf_counter()
        n = 0
        while not self.stopping:
            now = time.perf_counter()
            if now >= until:
                return
            due = int((now - start) / interval) + 1
            while n < due:
                scheduled = start + n * interval
                if self.idle:
                    self.idle.popleft().send(scheduled)
                else:
                    self.backlog.append(scheduled)
                n += 1
            await asyncio.sleep(0.0005)

    async def main(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        conns: list[_Connection] = []
        for i in range(self.connections):
            _, conn = await loop.create_connection(
                lambda i=i: _Connection(self, i), self.host, self.port
            )
            conns.append(conn)
        begin = time.perf_counter()
        end = begin + self.warmup_s + self.duration_s
        if self.rate is None:
            for conn in conns:
                conn.send(time.perf_counter())
            await asyncio.sleep(self.warmup_s)
            self.measuring = True
            measured_from = time.perf_counter()
            await asyncio.sleep(self.duration_s)
        else:
            self.idle.extend(conns)
            scheduler = asyncio.create_task(self._schedule(end))
            await asyncio.sleep(self.warmup_s)
            self.measuring = True
            measured_from = time.perf_counter()
            await scheduler
        elapsed = time.perf_counter() - measured_from
        self.measuring = False
        self.stopping = True
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.gather(*(c.closed for c in conns))
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else 0.0

        return {
            "requests": self.completed,
            "elapsed_s": elapsed,
            "rps": self.completed / elapsed if elapsed else 0.0,
            "statuses": {str(k): v for k, v in self.statuses.items()},
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": pct(1.0),
            "backlog": len(self.backlog),
        }


def main(argv: list[str]) -> int:
    spec = orjson.loads(argv[0])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_Run(spec).main())
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
