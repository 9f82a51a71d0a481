"""The value a string idempotency key holds in Redis, defined once for Python and the Lua
scripts: the control plane's keys, and usage keys written before the compact keyspace
(``domain.idempotency.compact``), which are read until they expire.

::

    P|<digest>|<token>    pending: claimed by the request holding <token>, until its lease ends
    D|<digest>|<stored>   done: what a replay is rebuilt from (a record key: the record's id)

``digest`` (hex, never ``|``) is what the key was used with: a request with another digest
is refused. ``token`` tells the claiming request's pending keys from another's. ``stored``
is any bytes, ``|`` included: it is everything after the second separator.

The scripts read and write values only through the Lua functions in ``LUA``, generated
from the constants below (and the states from ``ClaimState``): the format has no other
spelling. ``pending_value`` / ``done_value`` / ``decode_value`` are its Python side, for
reading keys back and writing them in tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.idempotency.claims import ClaimState

__all__ = ["DONE", "LUA", "PENDING", "SEP", "Value", "decode_value", "done_value", "pending_value"]

PENDING = "P"
DONE = "D"
SEP = "|"
_HEAD = len(PENDING + SEP)  # where the digest starts (0-based); DONE has the same length

_PENDING, _DONE, _SEP = PENDING.encode(), DONE.encode(), SEP.encode()

assert len(DONE) == len(PENDING)


@dataclass(frozen=True, slots=True)
class Value:
    pending: bool
    digest: str
    rest: bytes  # the token while pending, what was stored once done


def pending_value(digest: str, token: str) -> bytes:
    return f"{PENDING}{SEP}{digest}{SEP}{token}".encode()


def done_value(digest: str, stored: bytes) -> bytes:
    return f"{DONE}{SEP}{digest}{SEP}".encode() + stored


def decode_value(raw: bytes) -> Value:
    """Raises ValueError for bytes that are not a value of this format."""
    tag, rest = raw[: len(_PENDING)], raw[len(_PENDING) :]
    digest, sep, tail = rest[len(_SEP) :].partition(_SEP)
    if tag not in (_PENDING, _DONE) or not rest.startswith(_SEP) or not sep:
        raise ValueError(f"not an idempotency value: {raw[:40]!r}")
    return Value(tag == _PENDING, digest.decode(), tail)


# Lua strings are 1-based: the digest occupies [_HEAD + 1, _HEAD + #digest], its separator
# follows, then the token or the stored bytes.
LUA = f"""
local function pending_value(digest, token)
  return '{PENDING}{SEP}' .. digest .. '{SEP}' .. token
end
local function done_value(digest, stored)
  return '{DONE}{SEP}' .. digest .. '{SEP}' .. stored
end
-- How an existing value answers a request with this digest: a state and, when done,
-- what was stored.
local function read_value(v, digest)
  if string.sub(v, {_HEAD + 1}, {_HEAD + 1} + #digest) ~= digest .. '{SEP}' then
    return '{ClaimState.MISMATCH}', ''
  end
  if string.sub(v, 1, {len(PENDING)}) == '{PENDING}' then return '{ClaimState.INFLIGHT}', '' end
  return '{ClaimState.DONE}', string.sub(v, {_HEAD + 2} + #digest)
end
"""
