"""The Lua scripts of the idempotency store, and the call format of the coalesced one.

``BEGIN`` / ``COMPLETE`` / ``RELEASE`` serve the control plane one call at a time, on
string keys in ``codec``'s format. ``OPS`` applies many usage claims and settlements in
one call, in order, on the compact keyspace (``domain.idempotency.compact``):

``ARGV[1]`` lease_ms, ``[2]`` ttl_s, ``[3]`` one line per operation (one string argument
for the whole batch: packing and parsing an argument per field costs more than the script
itself), ``[4]`` the stored payloads of the ok settlements (each a 4-byte length and the
bytes), ``[5]`` 24 bytes per key in the order the lines name them (its ident and the
first 8 bytes of its digest), ``[6]`` the namespace, ``[7]`` slice_s, ``[8]`` floor bits,
``[9]`` ``1`` when the legacy (one string key per key) names are in KEYS:

- claim  ``C|<has request key 0|1>|<n>|<token>[|<hex digest>]*``; KEYS: the item
  metadata hash, then (legacy) the request key's and the n record keys' names, whose hex
  digests end the line. Answer ``<ClaimState>\0<metadata>\0<RecordState,...>\0<stored>``
  (stored last: binary, it may hold a NUL).
  Nothing is written unless the whole claim can go ahead.
- settle ``S|<has request key 0|1>|<n>|<ok 0|1>|<token>|<created>[|<record id>]*n``; no
  KEYS. ok: pending → done (the request key with the next payload of ARGV[4]: inline when
  it is compact, else in a side key; a record key with its id); not ok: pending → deleted.
  An entry no longer pending with this token is left alone. Answer ``""``.

The answer's first element says whether legacy names are still wanted: old-format keys
are read until every one written before the compact keyspace started has expired.
``ops_call`` writes that format and ``ops_answers`` reads the answers: once per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from string import Template

from domain.idempotency import compact
from domain.idempotency.claims import Claim, ClaimState, RecordKey, RecordState
from domain.idempotency.codec import LUA

__all__ = [
    "BEGIN",
    "COMPLETE",
    "OPS",
    "PEEK",
    "RELEASE",
    "ClaimOp",
    "SettleOp",
    "ops_answers",
    "ops_call",
]


def _script(body: str, prelude: str = "") -> str:
    names = {f"STATE_{s.name}": s.value for s in ClaimState}
    names.update({f"RECORD_{s.name}": s.value for s in RecordState})
    return LUA + prelude + Template(body).substitute(names)


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

_OPS_PRELUDE = (
    """
local LEASE_MS, TTL_S = tonumber(ARGV[1]), tonumber(ARGV[2])
local NS, SLICE_S, FLOOR_BITS = ARGV[6], tonumber(ARGV[7]), tonumber(ARGV[8])
local t = redis.call('TIME')
local NOW_S = tonumber(t[1])
local NOW_MS = NOW_S * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
    + compact.LUA
)

OPS = _script(
    """
local legacy_open = NOW_S < SINCE + ROLLOUT + TTL_S + math.ceil(LEASE_MS / 1000) + MARGIN
local legacy = ARGV[9] == '1' and legacy_open
local DEADLINE = string.format('%013d', NOW_MS + LEASE_MS)  -- of every claim in this call
local blob, stored = ARGV[5], ARGV[4]
local pos, spos = 1, 1
local function next_key()
  local id, d8 = string.sub(blob, pos, pos + 15), string.sub(blob, pos + 16, pos + 23)
  pos = pos + 24
  return id, d8
end
local function next_stored()
  local len = struct.unpack('>I4', string.sub(stored, spos, spos + 3))
  local s = string.sub(stored, spos + 4, spos + 3 + len)
  spos = spos + 4 + len
  return s
end
-- A key's state for a claim: state, the stored bytes (done); where a new entry goes.
local function state_of(id, d8, legacy_name, hex)
  local v, _, field, tk = find(id)
  if v then
    if string.sub(v, 2, 9) ~= d8 then return '$STATE_MISMATCH', '' end
    local tag = string.sub(v, 1, 1)
    if tag == 'P' then return '$STATE_INFLIGHT', '' end
    if tag == 'D' then return '$STATE_DONE', 'D' .. string.sub(v, 10) end
    if tag == 'R' then return '$STATE_DONE', string.sub(v, 14) end
    return '$STATE_DONE', redis.call('GET', side_key(id)) or ''
  end
  if legacy_name then
    local old = redis.call('GET', legacy_name)
    if old then return read_value(old, hex) end
  end
  return '$STATE_NEW', '', tk, field
end
local out = {legacy_open and '1' or '0'}
local k = 1
local new = 0
for line in string.gmatch(ARGV[3], '[^\\n]+') do
  local f = {}
  for field in string.gmatch(line, '[^|]+') do f[#f + 1] = field end
  if f[1] == 'C' then
    local has_req, n, token = f[2] == '1', tonumber(f[3]), f[4]
    local meta = redis.call('HGET', KEYS[k], 'd') or ''
    k = k + 1
    local hx = 5
    local state, st = '$STATE_NEW', ''
    local req_id, req_d8, req_tk, req_field
    if has_req then
      req_id, req_d8 = next_key()
      local name, hex = nil, nil
      if legacy then name, hex = KEYS[k], f[hx]; k = k + 1; hx = hx + 1 end
      state, st, req_tk, req_field = state_of(req_id, req_d8, name, hex)
    end
    local rs, ids, d8s, tks, fields = {}, {}, {}, {}, {}
    for i = 1, n do ids[i], d8s[i] = next_key() end
    if state == '$STATE_NEW' then
      local blocked = false
      for i = 1, n do
        local name, hex = nil, nil
        if legacy then name, hex = KEYS[k + i - 1], f[hx + i - 1] end
        local s, rid
        s, rid, tks[i], fields[i] = state_of(ids[i], d8s[i], name, hex)
        if s == '$STATE_NEW' then rs[i] = '$RECORD_NEW'
        elseif s == '$STATE_DONE' then rs[i] = '$RECORD_DONE' .. rid
        elseif s == '$STATE_MISMATCH' then rs[i] = '$RECORD_MISMATCH'; blocked = true
        else rs[i] = '$RECORD_PENDING'; blocked = true end
      end
      if blocked then
        state = '$STATE_RECORDS'
      else
        if req_id then
          put(req_tk, req_field, 'P' .. req_d8 .. DEADLINE .. token)
          new = new + 1
        end
        for i = 1, n do
          if rs[i] == '$RECORD_NEW' then
            put(tks[i], fields[i], 'P' .. d8s[i] .. DEADLINE .. token)
            new = new + 1
          end
        end
      end
    end
    if legacy then k = k + n end
    -- what was stored is binary (it may hold a NUL): last, so it is the rest of the answer
    out[#out + 1] = state .. '\\0' .. meta .. '\\0' .. table.concat(rs, ',') .. '\\0' .. st
  else
    local has_req, n, ok, token = f[2] == '1', tonumber(f[3]), f[4] == '1', f[5]
    local created = tonumber(f[6])
    local function settle(id, d8, done)
      -- most often the pending entry is where a new one goes: one HGET, not a search
      local pend = 'P' .. d8
      local tk, field = target(id), string.sub(id, 5, 12)
      local hk = tk
      local v = redis.call('HGET', hk, field)
      local mine = v and string.sub(v, 1, 9) == pend and string.sub(v, 23) == token
      if not mine then
        v, hk = find(id)
        mine = v and string.sub(v, 1, 9) == pend and string.sub(v, 23) == token
      end
      if ok then
        if v and not mine then return false end
        if v and hk == tk then
          redis.call('HSET', tk, field, done)  -- in place: the hash has its expiry
        else
          if v then redis.call('HDEL', hk, field) end
          put(tk, field, done)
        end
        return true
      elseif mine then
        redis.call('HDEL', hk, field)
      end
      return false
    end
    if has_req then
      local id, d8 = next_key()
      local s = ok and next_stored() or ''
      if string.sub(s, 1, 1) == 'D' then
        settle(id, d8, 'D' .. d8 .. string.sub(s, 2))
      else
        if settle(id, d8, 'X' .. d8 .. struct.pack('>I4', created)) then
          redis.call('SET', side_key(id), s, 'EXAT', expire_at(CUR))
        end
      end
    end
    for i = 1, n do
      local id, d8 = next_key()
      settle(id, d8, 'R' .. d8 .. struct.pack('>I4', created) .. (f[6 + i] or ''))
    end
    out[#out + 1] = ''
  end
end
count(new)
return out
""",
    _OPS_PRELUDE,
)

# ARGV[1] ttl_s, [2] the key's ident, [3] namespace, [4] slice_s, [5] floor bits. Returns
# the tag of the key's live entry ('P', 'D', 'X', 'R') or ''.
PEEK = _script(
    """
local e = find(ARGV[2])
if e then return string.sub(e, 1, 1) end
return ''
""",
    """
local TTL_S, NS = tonumber(ARGV[1]), ARGV[3]
local SLICE_S, FLOOR_BITS = tonumber(ARGV[4]), tonumber(ARGV[5])
local t = redis.call('TIME')
local NOW_S = tonumber(t[1])
local NOW_MS = NOW_S * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
    + compact.LUA,
)

_STATES = {s.value.encode(): s for s in ClaimState}
_NO_ID = "-"  # a released record's id field: never stored, but fields cannot be empty


@dataclass(slots=True)
class ClaimOp:
    meta_key: str
    request_key: str | None
    digest: str
    token: str
    records: Sequence[RecordKey]
    ref: bytes = b""  # the request key's 24 bytes (``key_ref``), when it has one


@dataclass(slots=True)
class SettleOp:
    """``records``: each claimed record key with the id it is stored with (when ok);
    ``stored``: the request key's payload, ``created`` the time its entry lives from."""

    request_key: str | None
    ok: bool
    digest: str
    token: str
    stored: bytes
    records: Sequence[tuple[RecordKey, str]]
    created: int = 0
    ref: bytes = b""

    @classmethod
    def release(
        cls,
        request_key: str | None,
        digest: str,
        token: str,
        records: Sequence[RecordKey],
        ref: bytes = b"",
    ) -> SettleOp:
        return cls(request_key, False, digest, token, b"", [(r, _NO_ID) for r in records], 0, ref)


def key_ref(name: str, digest: str) -> bytes:
    """A key's 24 bytes in ``OPS``'s ARGV[5]: its ident and the first 8 digest bytes."""
    return compact.ident(name) + bytes.fromhex(digest[:16])


def ops_call(
    lease_ms: int,
    ttl_s: int,
    layout: tuple[str, int, int],
    legacy: bool,
    ops: Sequence[ClaimOp | SettleOp],
) -> tuple[list[str], list[int | str | bytes]]:
    """The KEYS and ARGV of one ``OPS`` call running ``ops`` in order; ``layout`` is
    (namespace, slice_s, floor bits), ``legacy`` whether to read old-format keys too."""
    keys: list[str] = []
    lines: list[str] = []
    stored: list[bytes] = []
    blob: list[bytes] = []
    for op in ops:
        has_req = op.request_key is not None
        if isinstance(op, ClaimOp):
            keys.append(op.meta_key)
            line = f"C|{int(has_req)}|{len(op.records)}|{op.token}"
            if op.request_key is not None:
                blob.append(op.ref or key_ref(op.request_key, op.digest))
                if legacy:
                    keys.append(op.request_key)
                    line += "|" + op.digest
            if op.records:
                blob.extend([key_ref(r.key, r.digest) for r in op.records])
                if legacy:
                    keys.extend(r.key for r in op.records)
                    line += "|" + "|".join(r.digest for r in op.records)
        else:
            if op.request_key is not None:
                blob.append(op.ref or key_ref(op.request_key, op.digest))
                if op.ok:
                    stored.append(len(op.stored).to_bytes(4, "big") + op.stored)
            line = f"S|{int(has_req)}|{len(op.records)}|{int(op.ok)}|{op.token}|{op.created}"
            if op.records:
                blob.extend([key_ref(r.key, r.digest) for r, _ in op.records])
                line += "|" + "|".join(rid for _, rid in op.records)
        lines.append(line)
    namespace, slice_s, floor_bits = layout
    return keys, [
        lease_ms,
        ttl_s,
        "\n".join(lines),
        b"".join(stored),
        b"".join(blob),
        namespace,
        slice_s,
        floor_bits,
        int(legacy),
    ]


def ops_answers(
    ops: Sequence[ClaimOp | SettleOp], raw: Sequence[bytes]
) -> tuple[bool, list[Claim | None]]:
    """Whether legacy names are still wanted, and one ``Claim`` per claim, ``None`` per
    settlement, in the order of ``ops``."""
    out: list[Claim | None] = []
    for op, answer in zip(ops, raw[1:], strict=True):
        if isinstance(op, SettleOp):
            out.append(None)
            continue
        state, meta, records, stored = answer.split(b"\0", 3)
        out.append(
            Claim(
                _STATES[state],
                meta,
                stored,
                records.decode().split(",") if records else [],
                op.ref,
            )
        )
    return raw[0] == b"1", out
