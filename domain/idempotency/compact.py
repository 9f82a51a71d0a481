"""The compact usage keyspace: idempotency entries as fields of small listpack hashes.

A usage request key or per-record key is not a Redis key of its own (~216 bytes each,
~290 with the keyspace's overhead) but a field of a hash that holds ~64 of them:

- **Identity**: ``ident`` = the first 16 bytes of blake2b of the key's name (account,
  mode, client key). Its first 4 bytes pick the bucket, bytes 5–12 are the field (8
  bytes): bucket bits plus 64 field bits tell keys apart; at 10,000 requests/s held for
  24 h that is one false match in ~10⁸ days.
- **Names**: ``<ns><slice_s>:h:<slice>:<generation>:<bucket>`` (the hashes),
  ``<ns><slice_s>:d`` (the descriptor: when the keyspace began, and each live slice's
  generations and counts), ``<ns><slice_s>:x:<ident hex>`` (side keys).
- **Time slices**: hashes belong to a slice of ``slice_s`` = half the TTL and expire whole
  ``ttl_s + MARGIN_S`` after their slice ends; a lookup reads every slice that may still
  hold a live entry (three, a fourth during the first ``MARGIN_S`` of a slice). Redis 7.0
  has no per-field expiry: an entry's own time decides whether it is live (done: its
  ``created`` + TTL; pending: its lease deadline), the hash's expiry frees the memory.
  An entry is held from 1 to 1.5 × the TTL, 1.25 × on average: slices of the whole TTL
  would save a lookup but hold entries up to 2 × the TTL.
- **Buckets sized by traffic**: the descriptor lists each slice's generations' bucket
  bits. A slice starts with enough buckets for the previous slice's
  count at ``FILL`` entries a hash (at least ``2**floor_bits``); when its newest
  generation passes that fill, a generation with 4× the buckets starts. Hashes stay
  under Redis 7's default ``hash-max-listpack-entries`` (128) and every value under
  ``hash-max-listpack-value`` (64 bytes), so they stay listpacks.
- **Values** (binary; ``d8`` = the first 8 bytes of the body digest)::

      P d8 <deadline ms, 13 digits> <token>   pending until the deadline
      D d8 <created u32> [<now u32>]          done, single record or batch without
                                              duplicates: the mbu_ id is derived again
      X d8 <created u32>                      done, the payload in its side key
      R d8 <created u32> <record id>          a per-record key, done

Nothing else is stored: the response is rendered again from the (identical, the digest
says) retried request, its derived id and these times.
"""

from __future__ import annotations

import hashlib

__all__ = ["FILL", "LUA", "MARGIN_S", "ROLLOUT_S", "ident", "inline_stored", "read_stored"]

FILL = 64  # entries a hash is sized for: half of Redis 7's hash-max-listpack-entries
MARGIN_S = 60  # how far an API clock may run ahead of Redis's without losing an entry
# How long API processes of the old format may go on writing its keys after the compact
# keyspace began (a rolling upgrade): old names are read that much longer.
ROLLOUT_S = 3600
_U32 = 1 << 32


def ident(name: str) -> bytes:
    """The 16 bytes a key is found by (bucket and field)."""
    return hashlib.blake2b(name.encode(), digest_size=16).digest()


def inline_stored(created: int, now: int) -> bytes | None:
    """A done request's compact payload (``D`` value), or None when the times do not fit
    (the caller then stores the long form in a side key)."""
    if not (0 <= created < _U32 and 0 <= now < _U32):
        return None
    head = b"D" + created.to_bytes(4, "big")
    return head if now == created else head + now.to_bytes(4, "big")


def read_stored(raw: bytes) -> tuple[int, int] | None:
    """(created, now) of a compact payload; None for the long (JSON) form."""
    if raw[:1] != b"D":
        return None
    created = int.from_bytes(raw[1:5], "big")
    return created, int.from_bytes(raw[5:9], "big") if len(raw) >= 9 else created


# Shared Lua: slices, buckets, lookups. ``NS`` (namespace), ``NOW_S``/``NOW_MS``,
# ``TTL_S``, ``SLICE_S``, ``FLOOR_BITS`` are locals the calling script defines first. Every
# ``redis.call`` costs more than the Lua around it: the descriptor is one hash read with
# one HMGET a call, and each lookup builds one string.
LUA = f"""
local FILL, MARGIN, ROLLOUT = {FILL}, {MARGIN_S}, {ROLLOUT_S}
local SNS = NS .. SLICE_S .. ':'  -- slices of another length are another keyspace
local DK = SNS .. 'd'
local CUR = math.floor(NOW_S / SLICE_S)
local OLDEST = math.floor((NOW_S - TTL_S - MARGIN) / SLICE_S)
local function expire_at(k) return (k + 1) * SLICE_S + TTL_S + MARGIN end
local fields = {{'since', 't' .. CUR, 's' .. CUR, 't' .. (CUR - 1)}}
for k = CUR, OLDEST, -1 do fields[#fields + 1] = 'g' .. k end
local desc = redis.call('HMGET', DK, unpack(fields))
local SINCE = tonumber(desc[1] or '0')
local TOTAL, GEN_START = tonumber(desc[2] or '0'), tonumber(desc[3] or '0')
local gens = {{}}
for k = CUR, OLDEST, -1 do
  local d = desc[5 + CUR - k]
  if d then gens[k] = d end
end
if not gens[CUR] then
  local prev = tonumber(desc[4] or '0')
  local bits = FLOOR_BITS
  while bits < 30 and (2 ^ bits) * FILL < prev do bits = bits + 1 end
  gens[CUR] = string.char(bits)
  if SINCE == 0 then SINCE = NOW_S end
  redis.call('HSET', DK, 'g' .. CUR, gens[CUR], 't' .. CUR, 0, 's' .. CUR, 0, 'since', SINCE)
  local old = OLDEST - 1  -- no lookup reads a slice this old any more
  redis.call('HDEL', DK, 'g' .. old, 't' .. old, 's' .. old)
  redis.call('EXPIREAT', DK, expire_at(CUR))  -- outlives every hash it describes
end
-- Every hash a lookup may read, newest first: its name up to the bucket, and the divisor
-- of the ident's top 32 bits that gives the bucket.
local LOOK = {{}}
for k = CUR, OLDEST, -1 do
  local g = gens[k]
  if g then
    for gi = #g, 1, -1 do
      LOOK[#LOOK + 1] = {{SNS .. 'h:' .. k .. ':' .. gi .. ':', 2 ^ (32 - string.byte(g, gi))}}
    end
  end
end
-- Where a new entry goes: the current slice's newest generation (``LOOK[1]``).
local function target(id)
  return LOOK[1][1] .. math.floor(struct.unpack('>I4', id) / LOOK[1][2])
end
-- The live entry of ``id``: value, hash, field (nil, nil, field when none), and the
-- ``target`` hash (the first one searched); expired entries met are deleted. The target
-- is read with its seal (field ``''``, written with its first entry, when it gets its
-- expiry): a hash without it is noted in ``unsealed``, so ``put`` expires each hash once,
-- not at every write.
local unsealed = {{}}
local function find(id)
  local field = string.sub(id, 5, 12)
  local top = struct.unpack('>I4', id)
  local tk
  for i = 1, #LOOK do
    local hk = LOOK[i][1] .. math.floor(top / LOOK[i][2])
    local v
    if i == 1 then
      tk = hk
      local got = redis.call('HMGET', hk, field, '')
      v = got[1]
      if not got[2] then unsealed[hk] = true end
    else
      v = redis.call('HGET', hk, field)
    end
    if v then
      local live
      if string.byte(v, 1) == 80 then  -- 'P'
        live = tonumber(string.sub(v, 10, 22)) > NOW_MS
      else
        live = struct.unpack('>I4', string.sub(v, 10, 13)) + TTL_S > NOW_S
      end
      if live then return v, hk, field, tk end
      redis.call('HDEL', hk, field)
    end
  end
  return nil, nil, field, tk
end
-- A new entry in ``tk``, a hash ``find`` read (as its target) in this call.
local function put(tk, field, value)
  if unsealed[tk] then
    redis.call('HSET', tk, field, value, '', '1')
    redis.call('EXPIREAT', tk, expire_at(CUR))
    unsealed[tk] = nil
  else
    redis.call('HSET', tk, field, value)
  end
end
local function side_key(id)
  local hex = string.gsub(id, '.', function(c) return string.format('%02x', string.byte(c)) end)
  return SNS .. 'x:' .. hex
end
-- Count new entries: a generation past its fill starts one with 4x the buckets.
local function count(new)
  if new == 0 then return end
  local total = redis.call('HINCRBY', DK, 't' .. CUR, new)
  local g = gens[CUR]
  local bits = string.byte(g, #g)
  if total - GEN_START > (2 ^ bits) * FILL and bits < 30 then
    redis.call('HSET', DK, 'g' .. CUR, g .. string.char(bits + 2), 's' .. CUR, total)
  end
end
"""
