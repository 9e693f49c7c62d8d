-- acquire's fast path: scripts.py puts this file *before* the libraries, so the common grant (a configured,
-- available model, no budget, a live record whose newest slot still counts and at most MAX_FAST_POPS of the
-- oldest to expire, no cooldown ahead, the call fits at the latest start) returns before the libraries'
-- ~30 closures and acquire's tables are built: that work was most of acquire's Redis CPU under load
-- (bench_redis). It is the general path's operations for that case and
-- no others (the contract tests compare both with strategy.py); any other case hands over to acquire.lua with
-- the four reads already made (PRE), so nothing is read twice.
-- Same KEYS, ARGV and reply as acquire.lua.
local PRE = nil
local MAX_FAST_POPS = 8  -- more slots to expire at once (a record idle for a while): the general path

-- expire(): drop the oldest slots no start at or after ``at`` can count, from lo (the newest one still
-- counts: checked by the caller). Returns the new lo and sums and the dropped slots (nil: none), or nil to
-- hand over (a lost slot, or too many to drop). Reads only: flush() deletes them once the call is granted.
local function drop_oldest(skey, lo, slot_ms, span, at, s1, s2, s3)
  local dead = nil
  while (lo + 1) * slot_ms - 1 + span <= at do
    if dead and #dead == MAX_FAST_POPS then return nil end
    local raw = redis.call('HGET', skey, lo)
    if not raw then return nil end
    local r, t, i, n = string.match(raw, SLOT)
    if not r then return nil end
    dead = dead or {}
    dead[#dead + 1] = lo
    s1, s2, s3, lo = s1 - tonumber(r), s2 - tonumber(t), s3 - tonumber(i), tonumber(n)
  end
  return lo, s1, s2, s3, dead
end

local function acquire_fast()
  if #KEYS ~= 4 then return nil end
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local v = redis.call('HMGET', KEYS[1], 'rpm', 'tpm', 'ipm', 'rpd', 'window_ms', 'safety', 'guard_ms')
  local st = redis.call('HMGET', KEYS[3], 'unavailable_until_ms', 'unavailable_reason', 'half_open',
                        'probe_until_ms', 'cooldown_until_ms')
  local raw = redis.call('GET', KEYS[2])
  PRE = {now = now, limits = v, state = st, header = raw}
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6] or v[7]) or not raw then return nil end
  if now < (tonumber(st[1]) or 0) or st[3] == '1' then return nil end
  local slot, lo, hi, last, s1, s2, s3, day, count, h1, h2, h3 = string.match(raw, HEADER)
  if not slot then return nil end
  lo, hi, last = tonumber(lo), tonumber(hi), tonumber(last)
  local safety, window_ms = tonumber(v[6]) or 1, tonumber(v[5]) or DEFAULT_WINDOW_MS
  local slot_ms = slot_ms_of(window_ms)
  if lo < 0 or hi < lo or tonumber(slot) ~= slot_ms then return nil end  -- empty record, or a slot-size change
  local span = window_ms + (tonumber(v[7]) or DEFAULT_GUARD_MS)
  local earliest = math.max(now, last)
  if (hi + 1) * slot_ms - 1 + span <= earliest then return nil end  -- the whole record expired
  if (tonumber(st[5]) or 0) > earliest then return nil end
  local wait_ms = earliest - now
  if wait_ms > tonumber(ARGV[4]) then return nil end
  local dead
  lo, s1, s2, s3, dead = drop_oldest(KEYS[4], lo, slot_ms, span, earliest, tonumber(s1), tonumber(s2), tonumber(s3))
  if not lo then return nil end
  local c1, c2, c3 = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  local sums, costs = {s1, s2, s3}, {c1, c2, c3}
  for i = 1, 3 do  -- misfit() in _window.lua
    local limit = effective_limit(tonumber(v[i]) or 0, safety)
    local c = costs[i]
    if limit > 0 and c > 0 and sums[i] + math.min(c, limit) > limit then return nil end
  end
  day, count = tonumber(day), tonumber(count)
  local rpd = effective_limit(tonumber(v[4]) or 0, safety)
  if rpd > 0 and c1 > 0 then  -- day_count, and the rpd check before any grant
    local offset_ms = tonumber(ARGV[5])
    local today = day_index(now, offset_ms)
    if day ~= today then count = 0 end
    if count + c1 > rpd then return nil end
    day, count = today, count + c1
  end
  if dead then redis.call('HDEL', KEYS[4], unpack(dead)) end  -- flush()
  h1, h2, h3 = tonumber(h1), tonumber(h2), tonumber(h3)
  local k = math.floor(earliest / slot_ms)
  if k ~= hi then  -- add(): the newest slot moves from the header to the slots hash, linked to k
    redis.call('HSET', KEYS[4], hi, string.format(SLOT_FORMAT, h1, h2, h3, k))
    redis.call('PEXPIRE', KEYS[4], (k + 1) * slot_ms - 1 + span - now + 1000)
    hi, h1, h2, h3 = k, 0, 0, 0
  end
  redis.call('SET', KEYS[2], string.format(HEADER_FORMAT, slot_ms, lo, hi, earliest,
             sums[1] + c1, sums[2] + c2, sums[3] + c3, day, count, h1 + c1, h2 + c2, h3 + c3))
  local reason = ''
  if wait_ms > 0 then reason = 'queued' end
  return string.format('granted|%d|0|%d|0|%s', wait_ms, now, reason)
end

do
  local fast = acquire_fast()
  if fast then return fast end
end
