"""The Lua scripts of the idempotency store, and the call format of the coalesced one.

Every script starts with ``codec.LUA``, the one definition of the stored value format;
the states they answer are ``ClaimState`` / ``RecordState`` values, substituted into the
source. ``BEGIN`` / ``COMPLETE`` / ``RELEASE`` serve the control plane one call at a time.
``OPS`` applies many usage claims and settlements in one call, in order:

``ARGV[1]`` lease_ms, ``ARGV[2]`` ttl_ms, ``ARGV[3]`` one line per operation (one string
argument for the whole batch: packing and parsing an argument per field costs more than
the script itself), ``ARGV[4]`` the stored responses of the ok settlements, one a line:

- claim  ``C|<has request key 0|1>|<n>|<digest>|<token>[|<record digest>]*n``; KEYS: the
  item metadata hash, the request key (if any), n record keys. Answer
  ``<ClaimState>\\0<metadata>\\0<stored>\\0<RecordState,...>``. Nothing is written unless
  the whole claim can go ahead.
- settle ``S|<has request key 0|1>|<n>|<ok 0|1>|<digest>|<token>[|<record digest>|<id>]*n``;
  KEYS: the request key (if any), n record keys. ok: pending → done (the request key
  stores the next line of ARGV[4], a record key its id); not ok: pending → deleted. A key
  no longer pending with this token is left alone. Answer ``""``.

``ops_call`` writes that format and ``ops_answers`` reads the answers: once per call, not
per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from string import Template

from domain.idempotency.claims import Claim, ClaimState, RecordKey, RecordState
from domain.idempotency.codec import LUA

__all__ = ["BEGIN", "COMPLETE", "OPS", "RELEASE", "ClaimOp", "SettleOp", "ops_answers", "ops_call"]


def _script(body: str) -> str:
    names = {f"STATE_{s.name}": s.value for s in ClaimState}
    names.update({f"RECORD_{s.name}": s.value for s in RecordState})
    return LUA + Template(body).substitute(names)


# KEYS[1] idempotency key. ARGV: digest, token, lease_ms. Returns {state, stored-or-''}.
BEGIN = _script("""
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], pending_value(ARGV[1], ARGV[2]), 'PX', ARGV[3])
  return {'$STATE_NEW', ''}
end
local state, stored = read_value(v, ARGV[1])
return {state, stored}
""")

# ARGV: digest, token, ttl_ms, response. Returns 1 when stored, 0 when the key is not ours.
COMPLETE = _script("""
local v = redis.call('GET', KEYS[1])
if v and v ~= pending_value(ARGV[1], ARGV[2]) then return 0 end
redis.call('SET', KEYS[1], done_value(ARGV[1], ARGV[4]), 'PX', ARGV[3])
return 1
""")

# ARGV: digest, token
RELEASE = _script("""
if redis.call('GET', KEYS[1]) == pending_value(ARGV[1], ARGV[2]) then
  return redis.call('DEL', KEYS[1])
end
return 0
""")

OPS = _script("""
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
    local state, stored, req = '$STATE_NEW', '', nil
    if has_req == '1' then
      req = KEYS[k]
      k = k + 1
      local v = redis.call('GET', req)
      if v then state, stored = read_value(v, digest) end
    end
    local rs = {}
    if state == '$STATE_NEW' then
      local blocked = false
      for i = 1, n do
        local v = redis.call('GET', KEYS[k + i - 1])
        if not v then
          rs[i] = '$RECORD_NEW'
        else
          local st, rid = read_value(v, f[5 + i])
          if st == '$STATE_DONE' then rs[i] = '$RECORD_DONE' .. rid
          elseif st == '$STATE_MISMATCH' then rs[i] = '$RECORD_MISMATCH'; blocked = true
          else rs[i] = '$RECORD_PENDING'; blocked = true end
        end
      end
      if blocked then
        state = '$STATE_RECORDS'
      else
        if req then redis.call('SET', req, pending_value(digest, token), 'PX', lease) end
        for i = 1, n do
          if rs[i] == '$RECORD_NEW' then
            redis.call('SET', KEYS[k + i - 1], pending_value(f[5 + i], token), 'PX', lease)
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
      local mine = pending_value(digest, token)
      if ok == '1' then
        local response = stored_lines()
        if (not v) or v == mine then
          redis.call('SET', KEYS[k], done_value(digest, response), 'PX', ttl)
        end
      elseif v == mine then
        redis.call('DEL', KEYS[k])
      end
      k = k + 1
    end
    for i = 1, n do
      local key, rd, rid = KEYS[k + i - 1], f[5 + 2 * i], f[6 + 2 * i]
      local v = redis.call('GET', key)
      local mine = pending_value(rd, token)
      if ok == '1' then
        if (not v) or v == mine then redis.call('SET', key, done_value(rd, rid), 'PX', ttl) end
      elseif v == mine then
        redis.call('DEL', key)
      end
    end
    k = k + n
    out[#out + 1] = ''
  end
end
return out
""")

_STATES = {s.value.encode(): s for s in ClaimState}
_NO_ID = "-"  # a released record's id field: never stored, but fields cannot be empty


@dataclass(slots=True)
class ClaimOp:
    meta_key: str
    request_key: str | None
    digest: str
    token: str
    records: Sequence[RecordKey]


@dataclass(slots=True)
class SettleOp:
    """``records``: each claimed record key with the id it is stored with (when ok)."""

    request_key: str | None
    ok: bool
    digest: str
    token: str
    stored: bytes
    records: Sequence[tuple[RecordKey, str]]

    @classmethod
    def release(
        cls, request_key: str | None, digest: str, token: str, records: Sequence[RecordKey]
    ) -> SettleOp:
        return cls(request_key, False, digest, token, b"", [(r, _NO_ID) for r in records])


def ops_call(
    lease_ms: int, ttl_ms: int, ops: Sequence[ClaimOp | SettleOp]
) -> tuple[list[str], list[int | str | bytes]]:
    """The KEYS and ARGV of one ``OPS`` call running ``ops`` in order."""
    keys: list[str] = []
    lines: list[str] = []
    stored: list[bytes] = []
    for op in ops:
        has_req = op.request_key is not None
        if isinstance(op, ClaimOp):
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
    return keys, [lease_ms, ttl_ms, "\n".join(lines), b"\n".join(stored)]


def ops_answers(ops: Sequence[ClaimOp | SettleOp], raw: Sequence[bytes]) -> list[Claim | None]:
    """One ``Claim`` per claim, ``None`` per settlement, in the order of ``ops``."""
    out: list[Claim | None] = []
    for op, answer in zip(ops, raw, strict=True):
        if isinstance(op, SettleOp):
            out.append(None)
            continue
        state, meta, stored, records = answer.split(b"\0", 3)
        out.append(
            Claim(_STATES[state], meta, stored, records.decode().split(",") if records else [])
        )
    return out
