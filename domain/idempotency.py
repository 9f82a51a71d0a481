"""Idempotency keys in Redis: ``pending`` (with a lease) → ``done`` (with the response).

A key is marked done only after the work is safely stored (for usage: acknowledged by
Kafka). A retry while pending gets 409; a pending key whose owner failed is released at
once, or expires with its lease if the owner died, so the retry can go through. The same
key with a different body is refused. Redis is the fast path only: usage record ids are
derived from the key, so a retry that slips past a flushed Redis is still deduplicated by
the aggregator's ledger.

Values: ``P|<digest>|<token>`` while pending, ``D|<digest>|<stored>`` once done.

The usage hot path does not call Redis per request: ``claim`` and ``settle`` go through a
``Coalescer`` that runs every call submitted during one event-loop iteration as one Lua
script invocation (one round trip, one command to pack and parse), at most
``max_concurrent`` at a time — so batches grow by themselves under load. Those invocations
go over ``infra.scriptpipe`` (a lean pipelined connection); the control plane's single
calls use redis-py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from redis.asyncio import Redis

from infra.scriptpipe import ScriptPipe

__all__ = [
    "Begin",
    "Claim",
    "Coalescer",
    "IdempotencyStore",
    "RecordKey",
    "RedisIdempotencyStore",
    "body_digest",
]

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
_DIGEST_LEN = 32

# KEYS[1] idempotency key, KEYS[2] optional hash to read alongside (item metadata).
# ARGV: digest, token, lease_ms.  Returns {state, stored-or-'', extra-or-''}.
_BEGIN = """
local extra = ''
if KEYS[2] then extra = redis.call('HGET', KEYS[2], 'd') or '' end
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], 'P|' .. ARGV[1] .. '|' .. ARGV[2], 'PX', ARGV[3])
  return {'new', '', extra}
end
if string.sub(v, 3, 2 + string.len(ARGV[1])) ~= ARGV[1] then return {'mismatch', '', extra} end
if string.sub(v, 1, 1) == 'P' then return {'inflight', '', extra} end
return {'done', string.sub(v, 4 + string.len(ARGV[1])), extra}
"""

# ARGV: digest, token, ttl_ms, response
_COMPLETE = """
local v = redis.call('GET', KEYS[1])
if v and v ~= ('P|' .. ARGV[1] .. '|' .. ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], 'D|' .. ARGV[1] .. '|' .. ARGV[4], 'PX', ARGV[3])
return 1
"""

# ARGV: digest, token
_RELEASE = """
if redis.call('GET', KEYS[1]) == ('P|' .. ARGV[1] .. '|' .. ARGV[2]) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# Many usage claims and settlements in one call, applied in order. ARGV[1] = lease_ms,
# ARGV[2] = ttl_ms, ARGV[3] = one line per operation (one string argument for the whole
# batch: packing and parsing an argument per field costs more than the script itself):
#
#   claim:  "C|<has_request_key 0|1>|<n>|<digest>|<token>[|<record digest>]*n"
#           KEYS: item metadata hash, the request key (if any), n record keys.
#           Answer "<state>\0<metadata>\0<stored>\0<record states>": state is new | done |
#           mismatch | inflight | records; record states (comma-separated): n (claimed
#           now), d<stored record id> (done before), m (other record), p (pending).
#           Nothing is written unless the whole claim can go ahead.
#   settle: "S|<has_request_key 0|1>|<n>|<ok 0|1>|<digest>|<token>[|<record digest>|<id>]*n"
#           KEYS: the request key (if any), n record keys. ok: pending → done (the
#           request key stores the next line of ARGV[4]); not ok: pending → deleted. A key
#           no longer pending with this token is left alone. Answer "".
_OPS = """
local lease, ttl = ARGV[1], ARGV[2]
local stored_lines = string.gmatch(ARGV[4], '[^\\n]+')
local out = {}
local k = 1
for line in string.gmatch(ARGV[3], '[^\\n]+') do
  local f = {}
  for field in string.gmatch(line, '[^|]+') do f[#f + 1] = field end
  if f[1] == 'C' then
    local has_req, n, digest, token = f[2], tonumber(f[3]), f[4], f[5]
    local meta = redis.call('HGET', KEYS[k], 'd') or ''
    k = k + 1
    local state, stored, req = 'new', '', nil
    if has_req == '1' then
      req = KEYS[k]
      k = k + 1
      local v = redis.call('GET', req)
      if v then
        if string.sub(v, 3, 2 + #digest) ~= digest then state = 'mismatch'
        elseif string.sub(v, 1, 1) == 'P' then state = 'inflight'
        else state = 'done'; stored = string.sub(v, 4 + #digest) end
      end
    end
    local rs = {}
    if state == 'new' then
      local blocked = false
      for i = 1, n do
        local rd = f[5 + i]
        local v = redis.call('GET', KEYS[k + i - 1])
        if not v then rs[i] = 'n'
        elseif string.sub(v, 3, 2 + #rd) ~= rd then rs[i] = 'm'; blocked = true
        elseif string.sub(v, 1, 1) == 'P' then rs[i] = 'p'; blocked = true
        else rs[i] = 'd' .. string.sub(v, 4 + #rd) end
      end
      if blocked then
        state = 'records'
      else
        if req then redis.call('SET', req, 'P|' .. digest .. '|' .. token, 'PX', lease) end
        for i = 1, n do
          if rs[i] == 'n' then
            redis.call('SET', KEYS[k + i - 1], 'P|' .. f[5 + i] .. '|' .. token, 'PX', lease)
          end
        end
      end
    end
    k = k + n
    out[#out + 1] = state .. '\\0' .. meta .. '\\0' .. stored .. '\\0' .. table.concat(rs, ',')
  else
    local has_req, n, ok, digest, token = f[2], tonumber(f[3]), f[4], f[5], f[6]
    if has_req == '1' then
      local v = redis.call('GET', KEYS[k])
      local mine = 'P|' .. digest .. '|' .. token
      if ok == '1' then
        local response = stored_lines()
        if (not v) or v == mine then
          redis.call('SET', KEYS[k], 'D|' .. digest .. '|' .. response, 'PX', ttl)
        end
      elseif v == mine then
        redis.call('DEL', KEYS[k])
      end
      k = k + 1
    end
    for i = 1, n do
      local key, rd, rid = KEYS[k + i - 1], f[5 + 2 * i], f[6 + 2 * i]
      local v = redis.call('GET', key)
      local mine = 'P|' .. rd .. '|' .. token
      if ok == '1' then
        if (not v) or v == mine then redis.call('SET', key, 'D|' .. rd .. '|' .. rid, 'PX', ttl) end
      elseif v == mine then
        redis.call('DEL', key)
      end
    end
    k = k + n
    out[#out + 1] = ''
  end
end
return out
"""


def _log_settle_failure(exc: BaseException) -> None:
    log.warning("could not mark idempotency keys done (%s); their lease will expire", exc)


def body_digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=_DIGEST_LEN // 2).hexdigest()


@dataclass(frozen=True, slots=True)
class Begin:
    state: Literal["new", "inflight", "mismatch", "done"]
    stored: bytes
    extra: bytes


@dataclass(frozen=True, slots=True)
class RecordKey:
    """A per-record idempotency key (Redis key) and the digest of that record."""

    key: str
    digest: str


@dataclass(slots=True)
class Claim:
    """What Redis said about a usage request.

    ``state``: ``new`` (claimed: go ahead), ``done`` (replay ``stored``), ``mismatch`` /
    ``inflight`` (the request key), ``records`` (a per-record key blocks the request; see
    ``records``). ``records[i]``: ``n`` claimed now, ``d<id>`` accepted before as ``<id>``,
    ``m`` used with another record, ``p`` pending in another request.
    """

    state: Literal["new", "done", "mismatch", "inflight", "records"]
    meta: bytes
    stored: bytes
    records: list[str]


class IdempotencyStore(Protocol):
    async def begin(
        self, key: str, digest: str, token: str, extra_key: str | None = None
    ) -> Begin: ...
    async def complete(self, key: str, digest: str, token: str, response: bytes) -> bool: ...
    async def release(self, key: str, digest: str, token: str) -> None: ...


T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Runs the items submitted during one event-loop iteration as one batch call.

    At most ``max_concurrent`` batch calls run at once; items submitted meanwhile wait and
    go out together in the next call. A failed call fails every item in it; items queued
    with ``push`` (no future, nobody waits for them) are reported to ``on_push_error``,
    once per failed call.
    """

    def __init__(
        self,
        run: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int,
        max_concurrent: int,
        on_push_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._run = run
        self._max_batch = max_batch
        self._max_concurrent = max_concurrent
        self._on_push_error = on_push_error
        self._queue: list[tuple[T, asyncio.Future[R] | None]] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, looked up once: ``asyncio.get_running_loop`` makes a ``getpid``
        system call on CPython 3.11, and the hot path queues two items per request."""
        loop = self._loop
        if loop is None or loop.is_closed():
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def enqueue(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` for the next batch call; its future has the item's result."""
        loop = self._running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if not self._scheduled and self._running < self._max_concurrent:
            self._scheduled = True
            loop.call_soon(self._kick)
        return future

    def push(self, item: T) -> None:
        """Queue ``item`` like ``enqueue``, for a caller that does not wait for its result
        (no future per item: the hot path's settlements)."""
        self._queue.append((item, None))
        if not self._scheduled and self._running < self._max_concurrent:
            self._scheduled = True
            self._running_loop().call_soon(self._kick)

    async def drain(self) -> None:
        """Until the queue is empty and no batch call is running."""
        while self._queue or self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._queue and not self._tasks:
                await asyncio.sleep(0)

    def _kick(self) -> None:
        self._scheduled = False
        while self._queue and self._running < self._max_concurrent:
            batch, self._queue = (self._queue[: self._max_batch], self._queue[self._max_batch :])
            self._running += 1
            task = self._running_loop().create_task(self._call(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(self, batch: list[tuple[T, asyncio.Future[R] | None]]) -> None:
        # An item whose caller gave up while it waited (a timeout) is not run at all.
        batch = [entry for entry in batch if entry[1] is None or not entry[1].done()]
        try:
            results = await self._run([item for item, _ in batch]) if batch else []
        except asyncio.CancelledError:
            for _, future in batch:
                if future is not None:
                    future.cancel()
            raise
        except Exception as exc:
            pushed = False
            for _, future in batch:
                if future is None:
                    pushed = True
                elif not future.done():
                    future.set_exception(exc)
            if pushed and self._on_push_error is not None:
                self._on_push_error(exc)
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if future is not None and not future.done():
                    future.set_result(result)
        finally:
            self._running -= 1
            if self._queue and not self._scheduled:
                self._scheduled = True
                self._running_loop().call_soon(self._kick)


@dataclass(slots=True)
class _ClaimIn:
    meta_key: str
    request_key: str | None
    digest: str
    token: str
    records: Sequence[RecordKey]


@dataclass(slots=True)
class _SettleIn:
    request_key: str | None
    ok: bool
    digest: str
    token: str
    stored: bytes
    records: Sequence[tuple[RecordKey, str]]


class RedisIdempotencyStore:
    """The Redis backend: single calls for the control plane, coalesced ones for usage."""

    def __init__(
        self,
        redis: Redis,
        pipe: ScriptPipe,
        *,
        ttl_s: int,
        lease_s: float,
        max_batch: int = 512,
        max_concurrent: int = 2,
    ) -> None:
        self._begin = redis.register_script(_BEGIN)
        self._complete = redis.register_script(_COMPLETE)
        self._release = redis.register_script(_RELEASE)
        self._pipe = pipe  # the hot path's lean connection
        self._ops_sha = pipe.register(_OPS)
        self._ttl_ms = ttl_s * 1000
        self._lease_ms = int(lease_s * 1000)
        self._ops: Coalescer[_ClaimIn | _SettleIn, Claim | None] = Coalescer(
            self._run_ops,
            max_batch=max_batch,
            max_concurrent=max_concurrent,
            on_push_error=_log_settle_failure,
        )

    async def begin(self, key: str, digest: str, token: str, extra_key: str | None = None) -> Begin:
        keys = [key] if extra_key is None else [key, extra_key]
        state, stored, extra = await self._begin(keys=keys, args=[digest, token, self._lease_ms])
        return Begin(state.decode(), stored, extra)

    async def complete(self, key: str, digest: str, token: str, response: bytes) -> bool:
        done = await self._complete(keys=[key], args=[digest, token, self._ttl_ms, response])
        return bool(done)

    async def release(self, key: str, digest: str, token: str) -> None:
        await self._release(keys=[key], args=[digest, token])

    def claim(
        self,
        meta_key: str,
        request_key: str | None,
        digest: str,
        token: str,
        records: Sequence[RecordKey] = (),
    ) -> asyncio.Future[Claim]:
        """Read the item metadata and claim the request key and the per-record keys, all
        or nothing. The future fails with RedisError/OSError when Redis is unavailable.

        A future, not a coroutine: the hot path awaits it directly (one frame less per
        request, twice: suspension and resumption)."""
        # _run_ops answers a claim with a Claim (typing.cast would cost a call per request)
        return self._ops.enqueue(  # type: ignore[return-value]
            _ClaimIn(meta_key, request_key, digest, token, records)
        )

    def settle(
        self,
        request_key: str | None,
        digest: str,
        token: str,
        *,
        ok: bool,
        stored: bytes = b"",
        records: Sequence[tuple[RecordKey, str]] = (),
    ) -> asyncio.Future[Claim | None]:
        """Mark what ``claim`` took as done (``ok``, storing ``stored`` and each record's
        id) or release it. Queued at once, in order with the claims after it; await the
        future to know it is in Redis (it fails with RedisError/OSError when Redis is
        unavailable)."""
        return self._ops.enqueue(_SettleIn(request_key, ok, digest, token, stored, records))

    def settle_detached(
        self,
        request_key: str | None,
        digest: str,
        token: str,
        *,
        stored: bytes,
        records: Sequence[tuple[RecordKey, str]],
    ) -> None:
        """``settle(ok=True)`` for a caller that does not wait: queued at once, in order
        with the claims after it; a failure is logged (the keys' lease then expires)."""
        self._ops.push(_SettleIn(request_key, True, digest, token, stored, records))

    async def drain(self) -> None:
        """Wait until every queued operation has been sent and answered."""
        await self._ops.drain()

    async def _run_ops(self, ops: list[_ClaimIn | _SettleIn]) -> list[Claim | None]:
        keys: list[str] = []
        lines: list[str] = []
        stored: list[bytes] = []
        for op in ops:
            has_req = op.request_key is not None
            if isinstance(op, _ClaimIn):
                keys.append(op.meta_key)
                if op.request_key is not None:
                    keys.append(op.request_key)
                line = f"C|{int(has_req)}|{len(op.records)}|{op.digest}|{op.token}"
                if op.records:
                    keys.extend(r.key for r in op.records)
                    line += "|" + "|".join(r.digest for r in op.records)
            else:
                if op.request_key is not None:
                    keys.append(op.request_key)
                    if op.ok:
                        stored.append(op.stored)
                line = f"S|{int(has_req)}|{len(op.records)}|{int(op.ok)}|{op.digest}|{op.token}"
                if op.records:
                    keys.extend(r.key for r, _ in op.records)
                    line += "|" + "|".join(f"{r.digest}|{rid}" for r, rid in op.records)
            lines.append(line)
        args: list[int | str | bytes] = [
            self._lease_ms,
            self._ttl_ms,
            "\n".join(lines),
            b"\n".join(stored),
        ]
        raw: list[bytes] = await self._pipe.evalsha(self._ops_sha, keys, args)
        out: list[Claim | None] = []
        for op, answer in zip(ops, raw, strict=True):
            if isinstance(op, _SettleIn):
                out.append(None)
                continue
            state, meta, stored_value, records = answer.split(b"\0", 3)
            out.append(
                Claim(
                    state.decode(),  # type: ignore[arg-type]
                    meta,
                    stored_value,
                    records.decode().split(",") if records else [],
                )
            )
        return out
