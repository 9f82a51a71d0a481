"""Idempotency keys in Redis: ``pending`` (with a lease) → ``done`` (with the response).

A key is marked done only after the work is safely stored (for usage: acknowledged by
Kafka). A retry while pending gets 409; a pending key whose owner failed is released at
once, or expires with its lease if the owner died, so the retry can go through. The same
key with a different body is refused. Redis is the fast path only: usage record ids are
derived from the key, so a retry that slips past a flushed Redis is still deduplicated by
the aggregator's ledger.

Modules: ``claims`` (the Idempotency-Key rule, digests, the states a claim is answered),
``codec`` (the value a control-plane key holds, and old-format usage keys), ``compact``
(the usage keyspace: keys as fields of small listpack hashes in time slices, ~32 bytes a
request), ``scripts`` (the Lua scripts and the coalesced call's format), ``store``
(``RedisIdempotencyStore``).
"""

from domain.idempotency.claims import (
    DIGEST_BYTES,
    MAX_KEY_LENGTH,
    Begin,
    Claim,
    ClaimState,
    RecordKey,
    RecordState,
    body_digest,
    check_idempotency_key,
)
from domain.idempotency.store import RedisIdempotencyStore

__all__ = [
    "DIGEST_BYTES",
    "MAX_KEY_LENGTH",
    "Begin",
    "Claim",
    "ClaimState",
    "RecordKey",
    "RecordState",
    "RedisIdempotencyStore",
    "body_digest",
    "check_idempotency_key",
]
