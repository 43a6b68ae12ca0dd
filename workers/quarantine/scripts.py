"""The Lua scripts that change records: each one step, atomic, one round trip.

Every script takes the key base (``...{q}:``) as ARGV[1] and derives the record, history,
index and blacklist keys from it (see :mod:`workers.quarantine.keys`), so a record, its 8
index entries, its history and the blacklist always change together.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError

from common.bus.redis_batch import RedisBatch
from common.store import Store

__all__ = ["ADD_DEAD", "ADD_ENTITY", "CLAIM_OUTBOX", "EXTEND", "TRANSITION", "Script"]

_COMMON = """
local base = ARGV[1]
local function index(op, status, kind, reason, score, id)
  for _, k in ipairs({kind, 'all'}) do
    for _, r in ipairs({reason, 'all'}) do
      local key = base .. 'idx:' .. status .. ':' .. k .. ':' .. r
      if op == 'add' then redis.call('ZADD', key, score, id) else redis.call('ZREM', key, id) end
    end
  end
end
local function add_everywhere(status, kind, reason, score, id)
  index('add', status, kind, reason, score, id)
  index('add', 'all', kind, reason, score, id)
  redis.call('SADD', base .. 'combos', kind .. '|' .. reason)
end
"""

# ARGV: base, id, reason, created, transition, window_ttl, producer_field, type_field,
#       producer_counter, type_counter, the text fields as one JSON object, the body (bytes),
#       announce ('1': queue quarantine.entry.added in the outbox, '0': record silently).
# (Twelve arguments rather than one per field: packing arguments is the client's hot path.)
# Returns {created, producer_count, type_count, producer_blocked, type_blocked}.
ADD_DEAD = (
    _COMMON
    + """
local id = ARGV[2]
local rk = base .. 'rec:' .. id
local created = 0
if redis.call('EXISTS', rk) == 0 then
  local pairs_ = {'body', ARGV[12]}
  for name, value in pairs(cjson.decode(ARGV[11])) do
    pairs_[#pairs_ + 1] = name
    pairs_[#pairs_ + 1] = value
  end
  redis.call('HSET', rk, unpack(pairs_))
  add_everywhere('quarantined', 'message', ARGV[3], ARGV[4], id)
  redis.call('RPUSH', base .. 'hist:' .. id, ARGV[5])
  if ARGV[13] == '1' then redis.call('RPUSH', base .. 'outbox', id) end
  created = 1
end
local function count(field, counter)
  if field == '' then return 0 end
  if created == 1 then
    local n = redis.call('INCR', counter)
    if n == 1 then redis.call('EXPIRE', counter, tonumber(ARGV[6])) end
    return n
  end
  return tonumber(redis.call('GET', counter) or '0')
end
local pc = count(ARGV[7], ARGV[9])
local tc = count(ARGV[8], ARGV[10])
local pb, tb = 0, 0
if ARGV[7] ~= '' then pb = redis.call('HEXISTS', base .. 'bl', ARGV[7]) end
if ARGV[8] ~= '' then tb = redis.call('HEXISTS', base .. 'bl', ARGV[8]) end
return {created, pc, tc, pb, tb}
"""
)

# ARGV: base, id, kind, reason, created, transition, bl_field, expires_at ('' = permanent),
#       merge_transition, severity, then field/value pairs.
# Returns {'created'|'merged'|'exists', record_id, expires_at}.
ADD_ENTITY = (
    _COMMON
    + """
local id = ARGV[2]
local rk = base .. 'rec:' .. id
if redis.call('EXISTS', rk) == 1 then
  return {'exists', id, redis.call('HGET', rk, 'expires_at') or ''}
end
local bl = base .. 'bl'
local current = redis.call('HGET', bl, ARGV[7])
if current then
  local ck = base .. 'rec:' .. current
  local old = redis.call('HGET', ck, 'expires_at') or ''
  local new = ARGV[8]
  local merged = ''
  if old ~= '' and new ~= '' then
    if tonumber(new) > tonumber(old) then merged = new else merged = old end
  end
  redis.call('HSET', ck, 'expires_at', merged, 'updated_at', ARGV[5])
  if merged == '' then
    redis.call('HSET', ck, 'permanent', '1')
    redis.call('ZREM', base .. 'bl:expiry', current)
  else
    redis.call('ZADD', base .. 'bl:expiry', merged, current)
  end
  redis.call('RPUSH', base .. 'hist:' .. current, ARGV[9])
  return {'merged', current, merged}
end
redis.call('HSET', rk, unpack(ARGV, 11))
add_everywhere('quarantined', ARGV[3], ARGV[4], ARGV[5], id)
redis.call('RPUSH', base .. 'hist:' .. id, ARGV[6])
redis.call('HSET', bl, ARGV[7], id)
if ARGV[8] ~= '' then redis.call('ZADD', base .. 'bl:expiry', ARGV[8], id) end
return {'created', id, ARGV[8]}
"""
)

# ARGV: base, id, to, allowed_from (space separated), now, transition, expect_release_id,
#       owner, expired_by ('' = no check: else only if the block's expiry <= this), then
#       field/value pairs.
# Returns {'ok'|'resume'|'conflict'|'missing', from_status, release_id}.
TRANSITION = (
    _COMMON
    + """
local id = ARGV[2]
local to = ARGV[3]
local rk = base .. 'rec:' .. id
local cur = redis.call('HGET', rk, 'status')
if not cur then return {'missing', '', ''} end
local rid = redis.call('HGET', rk, 'release_id') or ''
if ARGV[7] ~= '' and rid ~= ARGV[7] then return {'conflict', cur, rid} end
local allowed = false
for s in string.gmatch(ARGV[4], '%S+') do if s == cur then allowed = true end end
if not allowed then
  local owner = redis.call('HGET', rk, 'release_owner')
  if cur == 'releasing' and ARGV[8] ~= '' and owner == ARGV[8] then
    return {'resume', cur, rid}
  end
  return {'conflict', cur, rid}
end
if ARGV[9] ~= '' then
  local exp = redis.call('HGET', rk, 'expires_at') or ''
  if exp == '' or tonumber(exp) > tonumber(ARGV[9]) then return {'conflict', cur, rid} end
end
local meta = redis.call('HMGET', rk, 'kind', 'reason', 'created_at', 'bl_field')
index('rem', cur, meta[1], meta[2], 0, id)
index('add', to, meta[1], meta[2], meta[3], id)
redis.call('HSET', rk, 'status', to, 'updated_at', ARGV[5])
if #ARGV > 9 then redis.call('HSET', rk, unpack(ARGV, 10)) end
redis.call('RPUSH', base .. 'hist:' .. id, ARGV[6])
if to == 'releasing' then
  redis.call('ZADD', base .. 'releasing', ARGV[5], id)
else
  redis.call('ZREM', base .. 'releasing', id)
end
if to == 'released' or to == 'discarded' then
  local bl = base .. 'bl'
  if meta[4] and redis.call('HGET', bl, meta[4]) == id then redis.call('HDEL', bl, meta[4]) end
  redis.call('ZREM', base .. 'bl:expiry', id)
end
return {'ok', cur, redis.call('HGET', rk, 'release_id') or ''}
"""
)

# ARGV: base, id, expires_at ('' = permanent), now, transition.
# Returns {'ok'|'missing'|'conflict', status}.
EXTEND = """
local base = ARGV[1]
local id = ARGV[2]
local rk = base .. 'rec:' .. id
local meta = redis.call('HMGET', rk, 'status', 'kind')
if not meta[1] then return {'missing', ''} end
if meta[2] == 'message' or (meta[1] ~= 'quarantined' and meta[1] ~= 'under_review') then
  return {'conflict', meta[1]}
end
local permanent = '0'
if ARGV[3] == '' then permanent = '1' end
redis.call('HSET', rk, 'expires_at', ARGV[3], 'permanent', permanent, 'updated_at', ARGV[4])
if ARGV[3] == '' then
  redis.call('ZREM', base .. 'bl:expiry', id)
else
  redis.call('ZADD', base .. 'bl:expiry', ARGV[3], id)
end
redis.call('RPUSH', base .. 'hist:' .. id, ARGV[5])
return {'ok', meta[1]}
"""

# ARGV: base, n, now, stale_before. Moves up to n ids from the outbox (plus announcements
# claimed before stale_before and never confirmed) into ``announcing``; returns them.
CLAIM_OUTBOX = """
local base = ARGV[1]
local n = tonumber(ARGV[2])
local claimed = {}
local stale = redis.call('ZRANGEBYSCORE', base .. 'announcing', '-inf', ARGV[4], 'LIMIT', 0, n)
for _, id in ipairs(stale) do claimed[#claimed + 1] = id end
local fresh = redis.call('LPOP', base .. 'outbox', n)
if fresh then
  for _, id in ipairs(fresh) do claimed[#claimed + 1] = id end
end
for _, id in ipairs(claimed) do redis.call('ZADD', base .. 'announcing', ARGV[3], id) end
return claimed
"""


# Retention. ARGV: base, cutoff (epoch s), limit. Deletes up to ``limit`` records created at
# or before the cutoff (record, body, history, index entries), except an entity's active block
# and a release in progress. Returns {purged, kept, body bytes freed}.
PURGE = (
    _COMMON
    + """
local ids = redis.call('ZRANGEBYSCORE', base .. 'idx:all:all:all', '-inf', ARGV[2],
  'LIMIT', 0, tonumber(ARGV[3]))
local purged, kept, bytes = 0, 0, 0
for _, id in ipairs(ids) do
  local rk = base .. 'rec:' .. id
  local f = redis.call('HMGET', rk, 'status', 'kind', 'reason', 'bl_field', 'body_size')
  local status, kind, reason, blf = f[1], f[2], f[3], f[4]
  local active = blf and redis.call('HGET', base .. 'bl', blf) == id
  if status == 'releasing' or active then
    kept = kept + 1
  else
    if status then
      index('rem', status, kind, reason, 0, id)
      index('rem', 'all', kind, reason, 0, id)
    end
    redis.call('ZREM', base .. 'idx:all:all:all', id)
    redis.call('DEL', rk, base .. 'hist:' .. id)
    redis.call('ZREM', base .. 'announcing', id)
    redis.call('ZREM', base .. 'bl:expiry', id)
    purged = purged + 1
    bytes = bytes + (tonumber(f[5]) or 0)
  end
end
return {purged, kept, bytes}
"""
)


class Script:
    """A Lua script run by SHA, loaded on first use (one round trip in the common case)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, store: Store, route_key: str, args: list[Any], *, batch: RedisBatch | None = None
    ) -> Any:
        """Run with ``args`` as ARGV. Every key derives from ARGV[1] and shares the ``{q}``
        hash tag; ``route_key`` (a record key) is the one KEYS entry, so Redis Cluster sends
        the script to the node owning that slot. With ``batch``, calls issued in the same
        loop tick share one pipelined round trip (the dead-letter hot path)."""
        try:
            if batch is not None:
                return await batch.execute("EVALSHA", self.sha, 1, route_key, *args)
            return await store.execute(lambda r: r.evalsha(self.sha, 1, route_key, *args))
        except NoScriptError:
            return await store.execute(lambda r: r.eval(self.source, 1, route_key, *args))
