"""Idempotency keys in Redis: ``pending`` (with a lease) → ``done`` (with the response).

A key is marked done only after the work is safely stored (for usage: acknowledged by
Kafka). A retry while pending gets 409; a pending key whose owner failed is released at
once, or expires with its lease if the owner died, so the retry can go through. The same
key with a different body is refused. Redis is the fast path only: usage record ids are
derived from the key, so a retry that slips past a flushed Redis is still deduplicated by
the aggregator's ledger.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, Protocol

from redis.asyncio import Redis

__all__ = ["Begin", "IdempotencyStore", "RedisIdempotencyStore", "body_digest"]

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


def body_digest(body: bytes) -> str:
    return hashlib.blake2b(body, digest_size=_DIGEST_LEN // 2).hexdigest()


@dataclass(frozen=True, slots=True)
class Begin:
    state: Literal["new", "inflight", "mismatch", "done"]
    stored: bytes
    extra: bytes


class IdempotencyStore(Protocol):
    async def begin(self, key: str, digest: str, token: str, extra_key: str | None = None
                    ) -> Begin: ...
    async def complete(self, key: str, digest: str, token: str, response: bytes) -> bool: ...
    async def release(self, key: str, digest: str, token: str) -> None: ...


class RedisIdempotencyStore:
    def __init__(self, redis: Redis, *, ttl_s: int, lease_s: float) -> None:
        self._begin = redis.register_script(_BEGIN)
        self._complete = redis.register_script(_COMPLETE)
        self._release = redis.register_script(_RELEASE)
        self._ttl_ms = ttl_s * 1000
        self._lease_ms = int(lease_s * 1000)

    async def begin(self, key: str, digest: str, token: str, extra_key: str | None = None
                    ) -> Begin:
        keys = [key] if extra_key is None else [key, extra_key]
        state, stored, extra = await self._begin(keys=keys, args=[digest, token, self._lease_ms])
        return Begin(state.decode(), stored, extra)

    async def complete(self, key: str, digest: str, token: str, response: bytes) -> bool:
        done = await self._complete(keys=[key], args=[digest, token, self._ttl_ms, response])
        return bool(done)

    async def release(self, key: str, digest: str, token: str) -> None:
        await self._release(keys=[key], args=[digest, token])
