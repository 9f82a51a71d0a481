"""A usage request's result: the ``usage_record`` / ``usage_record_batch`` object answered,
what its idempotency key keeps, and how a repeated request is answered from that.

The key keeps only the request's times, and for a batch with duplicates which records
were duplicates: the id is derived again from the key and the digest, the response is
rebuilt from that and the (identical, the digest says) retried request — a single record
or a batch of 1000 costs Redis a 5- or 9-byte payload (``domain.idempotency.compact``).
A repeat whose key is not done yet, or was used with another request, is refused instead
(``answer_repeat``).
"""

from __future__ import annotations

import orjson

from domain.idempotency import Claim, ClaimState, RecordState
from domain.idempotency.compact import inline_stored, read_stored
from infra.errors import IdempotencyInFlight, IdempotencyMismatch
from ingest.parse import Request

__all__ = ["answer_repeat", "dump_stored", "load_stored", "render"]

# Enum members looked up once: an enum class attribute costs ~80 ns a read on 3.11.
_DONE, _MISMATCH, _INFLIGHT = ClaimState.DONE, ClaimState.MISMATCH, ClaimState.INFLIGHT
_RECORD_MISMATCH, _RECORD_PENDING = RecordState.MISMATCH, RecordState.PENDING


def dump_stored(request_id: str, created: int, now: int, duplicates: dict[int, str]) -> bytes:
    """What the idempotency key stores once the request is accepted: the compact payload
    (times only), or the long form when there are duplicates to remember."""
    if not duplicates:
        inline = inline_stored(created, now)
        if inline is not None:
            return inline
    return orjson.dumps([request_id, created, now, duplicates], option=orjson.OPT_NON_STR_KEYS)


def load_stored(raw: bytes, request_id: str) -> tuple[str, int, int, dict[int, str]]:
    """``dump_stored``'s arguments back: (request id, created, now, duplicates). The
    compact payload has no id: ``request_id`` (derived again) stands for it."""
    times = read_stored(raw)
    if times is not None:
        return request_id, times[0], times[1], {}
    stored_id, created, now, dups = orjson.loads(raw)
    return stored_id, created, now, {int(k): v for k, v in dups.items()}


def render(
    req: Request,
    livemode: bool,
    request_id: str,
    created: int,
    now: int,
    duplicates: dict[int, str],
) -> bytes:
    """The response body. ``now`` stands for omitted timestamps; ``duplicates`` maps a
    record's index to the id it was accepted with before (a per-record key seen again)."""
    action = ("increment", "set")
    if not req.batch:
        ts = req.timestamps[0]
        return orjson.dumps(
            {
                "id": request_id,
                "object": "usage_record",
                "created": created,
                "livemode": livemode,
                "subscriptionItem": req.item,
                "quantity": req.quantities[0],
                "timestamp": now if ts is None else ts,
                "action": action[req.sets[0]],
            }
        )
    item = req.item
    data = [
        {
            "id": duplicates.get(i) or f"{request_id}_{i}",
            "object": "usage_record",
            "created": created,
            "livemode": livemode,
            "subscriptionItem": item,
            "quantity": q,
            "timestamp": now if ts is None else ts,
            "action": action[s],
            "duplicate": i in duplicates,
        }
        for i, (q, ts, s) in enumerate(zip(req.quantities, req.timestamps, req.sets, strict=True))
    ]
    return orjson.dumps(
        {
            "id": request_id,
            "object": "usage_record_batch",
            "created": created,
            "livemode": livemode,
            "subscriptionItem": item,
            "count": len(data),
            "duplicates": len(duplicates),
            "data": data,
        }
    )


def answer_repeat(claim: Claim, req: Request, livemode: bool, request_id: str) -> bytes:
    """The replayed response of a request whose claim found its key done (``request_id``:
    the id derived from its key and digest). Raises
    IdempotencyMismatch / IdempotencyInFlight when the key (or a record's key) was used
    with another request or is still pending in one."""
    if claim.state is _DONE:
        request_id, created, now, dups = load_stored(claim.stored, request_id)
        return render(req, livemode, request_id, created, now, dups)
    if claim.state is _MISMATCH:
        raise IdempotencyMismatch(
            "this Idempotency-Key was already used with a different request body;"
            " use a new key for a new request",
            param="Idempotency-Key",
        )
    if claim.state is _INFLIGHT:
        raise IdempotencyInFlight(
            "a request with this Idempotency-Key is still being processed; retry in a moment"
        )
    keyed = [i for i, k in enumerate(req.record_keys) if k is not None]
    other = [
        f"records[{keyed[j]}].idempotencyKey"
        for j, st in enumerate(claim.records)
        if st == _RECORD_MISMATCH
    ]
    if other:
        raise IdempotencyMismatch(
            f"per-record idempotency keys already used with a different record: "
            f"{', '.join(other)}; nothing was recorded",
            param=other[0],
        )
    pending = [
        f"records[{keyed[j]}].idempotencyKey"
        for j, st in enumerate(claim.records)
        if st == _RECORD_PENDING
    ]
    raise IdempotencyInFlight(
        f"records with these idempotency keys are still being processed by another"
        f" request: {', '.join(pending)}; retry in a moment",
        param=pending[0] if pending else None,
    )
