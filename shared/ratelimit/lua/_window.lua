-- Shared by every limiter script: scripts.py prepends this file (after _record.lua, the record's format)
-- to each one before loading it.
-- It mirrors shared/ratelimit/strategy.py operation for operation (all integers, so both agree
-- exactly; the contract tests compare them).
--
-- The record of what was admitted, per model: a header (KEYS window) and a slots hash (KEYS slots).
-- Slot k holds what started in [k * slot_ms, (k + 1) * slot_ms): requests, tokens, images, and the
-- next non-empty slot, so the live slots form a list from lo (oldest) to hi (newest) and expiring one
-- costs one HGET, whatever the gap to the next.
local MAX_WALK = 256
local DIMS = {'rpm', 'tpm', 'ipm'}
local floor, ceil, min, max = math.floor, math.ceil, math.min, math.max

-- Redis's clock, whole milliseconds: one clock for every worker on every machine.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
end

local function next_midnight_ms(now, offset_ms)
  return (day_index(now, offset_ms) + 1) * DAY_MS - offset_ms
end

-- The model's rule from its limits hash, or nil when it has none (missing fields take the ModelLimits
-- defaults): lim[i] = L' (0 = unlimited), rpd = L'rpd, span = window + guard, slot = slot_ms.
-- ``fields``: the hash's HMGET already read (acquire_fast.lua), else read here.
local function read_model(key, fields)
  local v = fields or redis.call('HMGET', key, 'rpm', 'tpm', 'ipm', 'rpd', 'window_ms', 'safety', 'guard_ms')
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6] or v[7]) then return nil end
  local safety, window_ms = tonumber(v[6]) or 1, tonumber(v[5]) or DEFAULT_WINDOW_MS
  local lim = {}
  for i = 1, 3 do lim[i] = effective_limit(tonumber(v[i]) or 0, safety) end
  return {lim = lim, rpd = effective_limit(tonumber(v[4]) or 0, safety),
          span = window_ms + (tonumber(v[7]) or DEFAULT_GUARD_MS), slot = slot_ms_of(window_ms)}
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

local function opt(n)
  if n < 0 then return nil end
  return n
end

local function parse_header(raw)
  if not raw then return nil end
  local f = {string.match(raw, HEADER)}
  if #f ~= 12 then return nil end
  for i = 1, 12 do f[i] = tonumber(f[i]) end
  return f
end

-- A slot's fields (_record.lua's SLOT).
local function read_slot(skey, k)
  local raw = redis.call('HGET', skey, k)
  if not raw then return nil end
  local r, t, i, n = string.match(raw, SLOT)
  return {tonumber(r), tonumber(t), tonumber(i), tonumber(n)}
end

local function write_slot(skey, k, v, next_k)
  redis.call('HSET', skey, k, string.format(SLOT_FORMAT, v[1], v[2], v[3], next_k))
end

-- The header, as a table the functions below update; writes happen in flush / add / save_header.
-- A model whose slot size changed (its window did) keeps everything it counted in one slot at its
-- latest start: it counts a little longer than it should, never shorter. ``pre``: the reads acquire_fast.lua
-- made (its ``header`` is the GET of wkey), or nil.
local function read_window(wkey, skey, model, readonly, pre)
  local raw
  if pre then raw = pre.header else raw = redis.call('GET', wkey) end
  local f = parse_header(raw)
  local w = {lo = nil, hi = nil, last = 0, sums = {0, 0, 0}, day = nil, count = 0, h = {0, 0, 0},
             dead = {}, clear = false, stale = false, slot = model and model.slot}
  if f then
    w.lo, w.hi, w.last, w.day, w.count = opt(f[2]), opt(f[3]), f[4], opt(f[8]), f[9]
    w.sums, w.h = {f[5], f[6], f[7]}, {f[10], f[11], f[12]}
    w.slot = w.slot or f[1]
  end
  if model and w.lo and f[1] ~= model.slot then
    if readonly then
      w.stale = true
    else
      local k = slot_of(model, w.last)
      redis.call('DEL', skey)
      w.lo, w.hi, w.h = k, k, {w.sums[1], w.sums[2], w.sums[3]}
    end
  end
  return w
end

local function empty(w)
  w.lo, w.hi, w.sums, w.h = nil, nil, {0, 0, 0}, {0, 0, 0}
end

-- Drop the oldest live slot from the sums; returns its index. Its field is deleted in flush.
local function pop(w, skey)
  local k = w.lo
  if k == w.hi then
    empty(w)
    return k
  end
  local v = read_slot(skey, k)
  w.dead[#w.dead + 1] = k
  if not v then  -- lost (evicted): nothing left to trust but the newest slot
    w.sums, w.lo = {w.h[1], w.h[2], w.h[3]}, w.hi
    return k
  end
  for i = 1, 3 do w.sums[i] = w.sums[i] - v[i] end
  w.lo = v[4]
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
  return {lo = w.lo, hi = w.hi, sums = {w.sums[1], w.sums[2], w.sums[3]}, h = {w.h[1], w.h[2], w.h[3]},
          dead = #w.dead, clear = w.clear}
end

local function rollback(w, mark)
  w.lo, w.hi, w.sums, w.h, w.clear = mark.lo, mark.hi, mark.sums, mark.h, mark.clear
  for i = #w.dead, mark.dead + 1, -1 do w.dead[i] = nil end
end

-- Delete the expired slots' fields (everything, when the whole record expired).
local function flush(w, skey)
  if w.clear then
    redis.call('DEL', skey)
  elseif #w.dead > 0 then
    for i = 1, #w.dead, 4000 do
      redis.call('HDEL', skey, unpack(w.dead, i, math.min(i + 3999, #w.dead)))
    end
  end
  w.dead, w.clear = {}, false
end

-- Count ``c`` in slot k (k >= hi: starts only move forward). When k is a new slot, the old newest one
-- moves from the header to the slots hash, linked to k, and the hash expires once nothing in it counts.
local function add(w, model, skey, k, c, now)
  if w.hi ~= k then
    if w.hi then
      write_slot(skey, w.hi, w.h, k)
      redis.call('PEXPIRE', skey, free_at(model, k) - now + 1000)
    else
      w.lo = k
    end
    w.hi, w.h = k, {0, 0, 0}
  end
  for i = 1, 3 do
    w.h[i] = w.h[i] + c[i]
    w.sums[i] = w.sums[i] + c[i]
  end
end

-- Settle: slot k by ``d`` (never below 0), in the header when it is the newest slot.
local function adjust_slot(w, skey, k, d)
  local v = nil
  if k == w.hi then v = w.h else v = read_slot(skey, k) end
  if not v then return false end
  for i = 1, 3 do
    local new = max(0, v[i] + d[i])
    w.sums[i] = w.sums[i] + new - v[i]
    v[i] = new
  end
  if k ~= w.hi then write_slot(skey, k, v, v[4]) end
  return true
end

local function n(x)
  if x == nil then return -1 end
  return x
end

local function save_header(wkey, w)
  redis.call('SET', wkey, string.format(HEADER_FORMAT, w.slot, n(w.lo), n(w.hi),
             w.last, w.sums[1], w.sums[2], w.sums[3], n(w.day), w.count, w.h[1], w.h[2], w.h[3]))
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
