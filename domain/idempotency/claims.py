"""The vocabulary of claiming an idempotency key: what a claim asks with and is answered.

A claim asks with the client's ``Idempotency-Key`` (the rule for it lives here alone: the
usage hot path, the control-plane middleware and the OpenAPI ``maxLength`` all read
``MAX_KEY_LENGTH`` / ``check_idempotency_key``), a digest of what the key is used with,
and for a usage batch its per-record keys (``RecordKey``). It is answered with a
``ClaimState`` (and a ``RecordState`` per record key). The states are spelled once, here:
the Lua scripts' source is generated from these enums (``domain.idempotency.codec``,
``domain.idempotency.scripts``) and the store maps each answer to its member, so callers
compare members by identity.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from infra.errors import InvalidRequest

__all__ = [
    "DIGEST_BYTES",
    "MAX_KEY_LENGTH",
    "Begin",
    "Claim",
    "ClaimState",
    "RecordKey",
    "RecordState",
    "body_digest",
    "check_idempotency_key",
]

MAX_KEY_LENGTH = 255
DIGEST_BYTES = 16  # a request's digest: 32 hex characters


def check_idempotency_key(key: str) -> str:
    """``key`` when it is 1 to ``MAX_KEY_LENGTH`` characters; InvalidRequest otherwise."""
    if not 0 < len(key) <= MAX_KEY_LENGTH:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", param="Idempotency-Key"
        )
    return key


def body_digest(body: bytes, size: int = DIGEST_BYTES) -> str:
    """A hex digest of what a key is used with (``size`` bytes; hex, so never the value
    format's separator). The same key with another digest is refused."""
    return hashlib.blake2b(body, digest_size=size).hexdigest()


class ClaimState(StrEnum):
    """The state of a request's key, as a claim found it."""

    NEW = "new"  # free: claimed now, go ahead
    DONE = "done"  # used before with the same request: replay what it stored
    MISMATCH = "mismatch"  # used before with a different request: refuse
    INFLIGHT = "inflight"  # pending in another request: retry later
    RECORDS = "records"  # the request key is free but a per-record key blocks the request


class RecordState(StrEnum):
    """A per-record key's state in ``Claim.records`` (one letter: answers stay small)."""

    NEW = "n"  # free: claimed now
    DONE = "d"  # accepted before: followed by that record's id (``d<id>``)
    MISMATCH = "m"  # used before with a different record
    PENDING = "p"  # pending in another request


@dataclass(frozen=True, slots=True)
class RecordKey:
    """A per-record idempotency key (Redis key) and the digest of that record."""

    key: str
    digest: str


@dataclass(frozen=True, slots=True)
class Begin:
    """A control-plane claim: ``state`` is never ``RECORDS``; ``stored`` is set when done."""

    state: ClaimState
    stored: bytes


@dataclass(slots=True)
class Claim:
    """What Redis said about a usage request: the state of its key, the item metadata read
    alongside, what a ``DONE`` key stored, and one ``RecordState`` per record key (all
    ``NEW`` when ``state`` is ``NEW``; nothing is claimed otherwise). ``ref``: how the
    store finds the request key again (its settlement passes it back: not computed twice)."""

    state: ClaimState
    meta: bytes
    stored: bytes
    records: list[str]
    ref: bytes = b""
