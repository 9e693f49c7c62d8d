-- Shared by every limiter script: scripts.py prepends this file to each one before loading it.
-- It mirrors shared/ratelimit/strategy.py operation for operation (all integers, so both agree
-- exactly; the contract tests compare them).
--
-- The record of what was admitted, per model: a header hash (KEYS window) and a slots hash (KEYS
-- slots). Slot k holds what started in [k * slot_ms, (k + 1) * slot_ms): fields r<k> t<k> i<k>
-- (requests, tokens, images) and n<k>, the next non-empty slot, so the live slots form a list from
-- lo (oldest) to hi (newest) and expiring one costs one HMGET, whatever the gap to the next.
-- Header: slot_ms lo hi last_ms s1 s2 s3 (sums over the live slots) rpd_day rpd_count.
local DAY_MS = 86400000
local EPSILON = 1e-9
local SLOTS_PER_WINDOW = 600
local MAX_WALK = 256
local DIMS = {'rpm', 'tpm', 'ipm'}
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max

-- Redis's clock, whole milliseconds: one clock for every worker on every machine.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
end

local function day_index(now, offset_ms)
  return floor((now + offset_ms) / DAY_MS)
end

local function next_midnight_ms(now, offset_ms)
  return (day_index(now, offset_ms) + 1) * DAY_MS - offset_ms
end

local function effective_limit(limit, safety)
  if limit <= 0 then return 0 end
  return max(1, floor(limit * safety + EPSILON))
end

-- The model's rule from its limits hash, or nil when it has none (missing fields take the ModelLimits
-- defaults): lim[i] = L' (0 = unlimited), rpd = L'rpd, span = window + guard, slot = slot_ms.
local function read_model(key)
  local v = redis.call('HMGET', key, 'rpm', 'tpm', 'ipm', 'rpd', 'window_ms', 'safety', 'guard_ms')
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6] or v[7]) then return nil end
  local safety, window_ms = tonumber(v[6]) or 1, tonumber(v[5]) or 60000
  local lim = {}
  for i = 1, 3 do lim[i] = effective_limit(tonumber(v[i]) or 0, safety) end
  return {lim = lim, rpd = effective_limit(tonumber(v[4]) or 0, safety),
          span = window_ms + (tonumber(v[7]) or 500), slot = max(1, ceil(window_ms / SLOTS_PER_WINDOW))}
end

local function free_at(model, k)
  return (k + 1) * model.slot - 1 + model.span
end

local function slot_of(model, at)
  return floor(at / model.slot)
end

local function misfit(model, sums, costs)
  for i = 1, 3 do
    local limit = model.lim[i]
    if limit > 0 and costs[i] > 0 and sums[i] + min(costs[i], limit) > limit then return DIMS[i] end
  end
  return ''
end

-- The header, as a table the functions below update; writes happen in flush / add / save_header.
-- A model whose slot size changed (its window did) keeps everything it counted in one slot at its
-- latest start: it counts a little longer than it should, never shorter.
local function read_window(wkey, skey, model, readonly)
  local h = redis.call('HMGET', wkey, 'slot_ms', 'lo', 'hi', 'last_ms', 's1', 's2', 's3', 'rpd_day', 'rpd_count')
  local w = {lo = tonumber(h[2]), hi = tonumber(h[3]), last = tonumber(h[4]) or 0,
             sums = {tonumber(h[5]) or 0, tonumber(h[6]) or 0, tonumber(h[7]) or 0},
             day = tonumber(h[8]), count = tonumber(h[9]) or 0, dead = {}, clear = false, stale = false}
  if w.lo and tonumber(h[1]) ~= model.slot then
    if readonly then
      w.stale = true
    else
      local k = slot_of(model, w.last)
      redis.call('DEL', skey)
      redis.call('HSET', skey, 'r' .. k, w.sums[1], 't' .. k, w.sums[2], 'i' .. k, w.sums[3])
      w.lo, w.hi = k, k
    end
  end
  return w
end

local function empty(w)
  w.lo, w.hi, w.sums = nil, nil, {0, 0, 0}
end

-- Drop the oldest live slot from the sums; returns its index. Its fields are deleted in flush.
local function pop(w, skey)
  local k = w.lo
  local v = redis.call('HMGET', skey, 'r' .. k, 't' .. k, 'i' .. k, 'n' .. k)
  w.dead[#w.dead + 1] = k
  if k == w.hi or not v[4] then
    empty(w)
  else
    for i = 1, 3 do w.sums[i] = w.sums[i] - (tonumber(v[i]) or 0) end
    w.lo = tonumber(v[4])
  end
  return k
end

-- Drop every slot that no start at or after ``at`` can count.
local function expire(w, model, skey, at)
  if w.stale then return end
  if w.lo and free_at(model, w.hi) <= at then
    w.clear = true
    empty(w)
  end
  while w.lo and free_at(model, w.lo) <= at do pop(w, skey) end
end

local function checkpoint(w)
  return {lo = w.lo, hi = w.hi, sums = {w.sums[1], w.sums[2], w.sums[3]}, dead = #w.dead, clear = w.clear}
end

local function rollback(w, mark)
  w.lo, w.hi, w.sums, w.clear = mark.lo, mark.hi, mark.sums, mark.clear
  for i = #w.dead, mark.dead + 1, -1 do w.dead[i] = nil end
end

-- Delete the expired slots' fields (everything, when the whole record expired).
local function flush(w, skey)
  if w.clear then
    redis.call('DEL', skey)
  elseif #w.dead > 0 then
    local fields = {}
    for _, k in ipairs(w.dead) do
      fields[#fields + 1] = 'r' .. k
      fields[#fields + 1] = 't' .. k
      fields[#fields + 1] = 'i' .. k
      fields[#fields + 1] = 'n' .. k
      if #fields >= 4000 then redis.call('HDEL', skey, unpack(fields)); fields = {} end
    end
    if #fields > 0 then redis.call('HDEL', skey, unpack(fields)) end
  end
  w.dead, w.clear = {}, false
end

-- Count ``c`` in slot k (k >= hi: starts only move forward). A new slot links from the old newest
-- and sets the slots hash to expire once nothing in it can count.
local function add(w, model, skey, k, c, now)
  if w.hi == k then
    for i = 1, 3 do
      if c[i] ~= 0 then redis.call('HINCRBY', skey, string.sub('rti', i, i) .. k, c[i]) end
    end
  else
    if w.hi then
      redis.call('HSET', skey, 'r' .. k, c[1], 't' .. k, c[2], 'i' .. k, c[3], 'n' .. w.hi, k)
    else
      redis.call('HSET', skey, 'r' .. k, c[1], 't' .. k, c[2], 'i' .. k, c[3])
      w.lo = k
    end
    w.hi = k
    redis.call('PEXPIRE', skey, free_at(model, k) - now + 1000)
  end
  for i = 1, 3 do w.sums[i] = w.sums[i] + c[i] end
end

local function save_header(wkey, w, model)
  redis.call('HSET', wkey, 'slot_ms', model.slot, 'lo', w.lo or '', 'hi', w.hi or '', 'last_ms', w.last,
             's1', w.sums[1], 's2', w.sums[2], 's3', w.sums[3], 'rpd_day', w.day or '', 'rpd_count', w.count)
end

-- Today's request count (0 once the Pacific day has turned).
local function day_count(w, now, offset_ms)
  if w.day ~= day_index(now, offset_ms) then return 0 end
  return w.count
end

-- The earliest start for ``costs``: no sooner than ``earliest`` (now, the latest start) and the
-- cooldown, then past the oldest slots until the window fits. Pops are speculative: the caller
-- checkpoints before and rolls back unless it grants.
local function plan(w, model, skey, costs, now, earliest, cooldown_until)
  local start = max(earliest, cooldown_until)
  expire(w, model, skey, start)
  local first = misfit(model, w.sums, costs)
  local missing, popped = first, 0
  while missing ~= '' and w.lo and popped < MAX_WALK do
    start = max(start, free_at(model, pop(w, skey)))
    popped = popped + 1
    missing = misfit(model, w.sums, costs)
  end
  if missing ~= '' and w.lo then start = max(start, free_at(model, w.lo)) end
  local reason = ''
  if popped > 0 then
    reason = first
  elseif start > now then
    reason = (cooldown_until > earliest) and 'cooldown' or 'queued'
  end
  return start, reason, missing == ''
end

-- {dim, used, ...} for the limited dimensions, plus how far ahead starts are booked.
local function usage(model, w, now)
  local out = {}
  for i = 1, 3 do
    if model.lim[i] > 0 then
      out[#out + 1] = DIMS[i]
      out[#out + 1] = w.sums[i]
    end
  end
  out[#out + 1] = 'ahead_ms'
  out[#out + 1] = max(0, w.last - now)
  return out
end
