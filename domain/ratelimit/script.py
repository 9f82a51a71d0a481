"""The Lua script that is each key's authoritative token bucket, in Redis.

``LEASE``: KEYS[1] the bucket of one key on one plane, a hash ``{t: tokens, ts: time}``
with tokens counted in millionths (integers: no rounding drifts the budget) and time in
microseconds of Redis's own clock (``TIME``: every API process sees one clock, whatever
their own say). ARGV: rate (tokens/s), burst, wanted tokens, and the time in µs to use
instead of ``TIME`` (empty in production; tests pass a clock of their own to check the
arithmetic exactly).

The bucket refills at ``rate`` up to ``burst`` (a missing bucket is full), then grants
``min(wanted, whole tokens held)``. Answer ``{granted, wait_us}``: ``granted ≥ 1`` and
``wait_us = 0``, or ``granted = 0`` and the µs until one whole token is there. A clock
that went back refills nothing and never moves the stored time back. The key expires once
the bucket would be full again (a missing bucket reads as full), plus a second.
"""

from __future__ import annotations

__all__ = ["LEASE"]

LEASE = """
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local unit = 1000000
local full = burst * unit
local v = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens, ts = tonumber(v[1]), tonumber(v[2])
if tokens == nil or ts == nil then tokens, ts = full, now end
if tokens > full then tokens = full end
if now > ts then
  local gained = (now - ts) * rate
  if gained >= full - tokens then tokens = full else tokens = tokens + gained end
  ts = now
end
local granted = math.floor(tokens / unit)
if granted > want then granted = want end
local wait = 0
if granted >= 1 then
  tokens = tokens - granted * unit
else
  granted = 0
  wait = math.ceil((unit - tokens) / rate)
end
redis.call('HSET', KEYS[1], 't', string.format('%d', tokens), 'ts', string.format('%d', ts))
redis.call('PEXPIRE', KEYS[1], math.ceil((full - tokens) / rate / 1000) + 1000)
return {granted, wait}
"""
