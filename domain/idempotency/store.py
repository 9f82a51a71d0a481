"""The Redis idempotency store: single calls for the control plane, coalesced ones for usage.

The usage hot path does not call Redis per request: ``claim`` and the settlements go
through a ``Coalescer`` that runs every call submitted during one event-loop iteration as
one ``OPS`` script invocation (one round trip, one command to pack and parse), at most
``max_concurrent`` at a time — so batches grow by themselves under load. Those invocations
go over ``infra.scriptpipe`` (a lean pipelined connection); the control plane's single
calls use redis-py. Usage keys live in the compact keyspace under ``namespace``
(``domain.idempotency.compact``); control-plane keys are string keys named by the caller.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from redis.asyncio import Redis

from domain.idempotency import compact
from domain.idempotency.claims import Begin, Claim, ClaimState, RecordKey
from domain.idempotency.scripts import (
    BEGIN,
    COMPLETE,
    OPS,
    PEEK,
    RELEASE,
    ClaimOp,
    SettleOp,
    key_ref,
    ops_answers,
    ops_call,
)
from infra.coalescer import Coalescer
from infra.scriptpipe import ScriptPipe

__all__ = ["RedisIdempotencyStore"]

log = logging.getLogger(__name__)


def _log_settle_failure(exc: BaseException) -> None:
    log.warning("could not mark idempotency keys done (%s); their lease will expire", exc)


class RedisIdempotencyStore:
    """``begin`` / ``complete`` / ``release`` for the control plane, one call each;
    ``claim`` / ``complete_claim`` / ``release_claim`` for usage, coalesced."""

    def __init__(
        self,
        redis: Redis,
        pipe: ScriptPipe,
        *,
        ttl_s: int,
        lease_s: float,
        namespace: str,
        floor_bits: int = 10,
        max_batch: int = 512,
        max_concurrent: int = 2,
    ) -> None:
        self._begin = redis.register_script(BEGIN)
        self._complete = redis.register_script(COMPLETE)
        self._release = redis.register_script(RELEASE)
        self._pipe = pipe  # the hot path's lean connection
        self._ops_sha = pipe.register(OPS)
        self._peek = redis.register_script(PEEK)
        self._ttl_ms = ttl_s * 1000
        self._ttl_s = ttl_s
        self._lease_ms = int(lease_s * 1000)
        # usage keys live in the compact keyspace; slices of half the TTL (compact.py)
        self._layout = (namespace, max(1, (ttl_s + 1) // 2), floor_bits)
        self._legacy = True  # old-format keys are read until Redis says none can be live
        self._ops: Coalescer[ClaimOp | SettleOp, Claim | None] = Coalescer(
            self._run_ops,
            max_batch=max_batch,
            max_concurrent=max_concurrent,
            on_push_error=_log_settle_failure,
        )

    async def begin(self, key: str, digest: str, token: str) -> Begin:
        """Claim ``key`` for a request with ``digest``, pending under ``token`` for the lease."""
        state, stored = await self._begin(keys=[key], args=[digest, token, self._lease_ms])
        return Begin(ClaimState(state.decode()), stored)

    async def complete(self, key: str, digest: str, token: str, response: bytes) -> bool:
        """Mark ``key`` done with ``response``; False when it is no longer this request's."""
        done = await self._complete(keys=[key], args=[digest, token, self._ttl_ms, response])
        return bool(done)

    async def release(self, key: str, digest: str, token: str) -> None:
        """Free ``key`` if it is still pending under ``token``."""
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
        ref = key_ref(request_key, digest) if request_key is not None else b""
        return self._ops.enqueue(  # type: ignore[return-value]
            ClaimOp(meta_key, request_key, digest, token, records, ref)
        )

    def release_claim(
        self,
        request_key: str | None,
        digest: str,
        token: str,
        records: Sequence[RecordKey],
        ref: bytes = b"",
    ) -> asyncio.Future[Claim | None]:
        """Free what ``claim`` took. Queued at once, in order with the claims after it;
        await the future to know it is done (it fails with RedisError/OSError when Redis is
        unavailable). ``ref``: the claim's, when at hand."""
        return self._ops.enqueue(SettleOp.release(request_key, digest, token, records, ref))

    def complete_claim(
        self,
        request_key: str | None,
        digest: str,
        token: str,
        *,
        stored: bytes,
        records: Sequence[tuple[RecordKey, str]],
        created: int,
        ref: bytes = b"",
    ) -> None:
        """Mark what ``claim`` took as done, the request key storing ``stored`` and each
        record key its id, live for the TTL from ``created``; for a caller that does not
        wait: queued at once, in order with the claims after it; a failure is logged (the
        keys' lease then expires). ``ref``: the claim's, when at hand."""
        self._ops.push(SettleOp(request_key, True, digest, token, stored, records, created, ref))

    async def usage_state(self, key: str) -> str | None:
        """``"pending"`` / ``"done"`` for a usage key with a live entry, None otherwise: for
        operators and tests, one call (not on the hot path)."""
        namespace, slice_s, floor_bits = self._layout
        tag = await self._peek(
            keys=[], args=[self._ttl_s, compact.ident(key), namespace, slice_s, floor_bits]
        )
        return None if not tag else "pending" if tag == b"P" else "done"

    async def drain(self) -> None:
        """Wait until every queued operation has been sent and answered."""
        await self._ops.drain()

    async def _run_ops(self, ops: list[ClaimOp | SettleOp]) -> list[Claim | None]:
        keys, args = ops_call(self._lease_ms, self._ttl_s, self._layout, self._legacy, ops)
        self._legacy, answers = ops_answers(
            ops, await self._pipe.evalsha(self._ops_sha, keys, args)
        )
        return answers
