-- Shared by every limiter script: scripts.py prepends this file to each one before loading it.
-- The bucket math mirrors shared/ratelimit/strategy.py operation for operation, so both give
-- bit-identical doubles for the same inputs (the contract tests compare them).
--
-- This runs on every acquire of every worker, so it is written for Redis's CPU (docs/ratelimit.md,
-- "Benchmark", has the per-part costs): a few redis.call (each ~1-3 us), HMGET of known fields rather
-- than HGETALL, doubles handed to redis.call as numbers (Redis writes them with %.17g in C, exact and
-- much cheaper than string.format in Lua), and dimensions as indices 1..3 (rpm, tpm, ipm), so no
-- per-call tables keyed by name.
local EPSILON = 1e-9
local DAY_MS = 86400000
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

-- The model's buckets from its limits hash, or nil when it has none (missing fields take the
-- ModelLimits defaults). m.cap[i] = C (false = unlimited), m.rate[i] = (L' - C) / window per ms,
-- m.rpd = L'rpd (0 = unlimited).
local function read_model(key)
  local v = redis.call('HMGET', key, 'rpm', 'tpm', 'ipm', 'rpd', 'window_ms', 'safety', 'burst', 'token_burst')
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6] or v[7] or v[8]) then return nil end
  local safety, window_ms = tonumber(v[6]) or 0.99, tonumber(v[5]) or 60000
  local burst = tonumber(v[7]) or 0.01
  local bursts = {burst, tonumber(v[8]) or 0.05, burst}
  local cap, rate = {false, false, false}, {0, 0, 0}
  for i = 1, 3 do
    local eff = effective_limit(tonumber(v[i]) or 0, safety)
    if eff > 0 then
      local c = max(1, min(ceil(eff * bursts[i] - EPSILON), eff - 1))
      cap[i], rate[i] = c, max(1, eff - c) / window_ms
    end
  end
  return {cap = cap, rate = rate, rpd = effective_limit(tonumber(v[4]) or 0, safety)}
end

-- The bucket hash: b[1] = ts_ms, b[2..4] = rpm/tpm/ipm levels at ts_ms (false = never seen),
-- b[5] = rpd_day, b[6] = rpd_count (raw strings).
local function read_bucket(key)
  return redis.call('HMGET', key, 'ts_ms', 'rpm', 'tpm', 'ipm', 'rpd_day', 'rpd_count')
end

-- Levels refilled to now, levels[i] (false = unlimited); a dimension never seen starts full.
local function current_levels(bucket, model, now)
  local elapsed = max(0, now - (tonumber(bucket[1]) or now))
  local levels = {false, false, false}
  for i = 1, 3 do
    local cap = model.cap[i]
    if cap then levels[i] = min(cap, (tonumber(bucket[i + 1]) or cap) + model.rate[i] * elapsed) end
  end
  return levels
end

-- Today's request count (0 once the Pacific day has turned).
local function day_count(bucket, now, offset_ms)
  if tonumber(bucket[5]) ~= day_index(now, offset_ms) then return 0 end
  return tonumber(bucket[6]) or 0
end

-- One HSET: the levels at ``now`` (numbers: Redis formats them with %.17g; '' = unlimited, read back
-- as never seen), plus the day counter when ``day`` is given.
local function save_levels(key, levels, now, day, count)
  local l1, l2, l3 = levels[1] or '', levels[2] or '', levels[3] or ''
  if day == nil then
    redis.call('HSET', key, 'ts_ms', now, 'rpm', l1, 'tpm', l2, 'ipm', l3)
  else
    redis.call('HSET', key, 'ts_ms', now, 'rpm', l1, 'tpm', l2, 'ipm', l3, 'rpd_day', day, 'rpd_count', count)
  end
end

local function flat_levels(levels)
  local out = {}
  for i = 1, 3 do
    if levels[i] then
      out[#out + 1] = DIMS[i]
      out[#out + 1] = string.format('%.17g', levels[i])
    end
  end
  return out
end

local function wait_for(level, cost, cap, rate)
  local need = min(cost, cap)
  if cost <= 0 or level >= need then return 0 end
  return (need - level) / rate
end

local function level_after(level, cost, cap, rate, delay_ms)
  local ahead = rate * delay_ms
  return min(cap, level + ahead) - cost - ahead
end

local function credit(level, amount, cap)
  if amount > 0 then return min(cap, level + amount) end
  return level + amount
end

-- The wait (whole ms, rounded up) before every dimension covers its cost, and the binding reason.
local function plan(levels, costs, model, floor_wait_ms, floor_reason)
  local wait_ms, reason = 0, ''
  if floor_wait_ms > 0 then wait_ms, reason = floor_wait_ms, floor_reason end
  for i = 1, 3 do
    local cap = model.cap[i]
    if cap and costs[i] > 0 then
      local dim_wait_ms = wait_for(levels[i], costs[i], cap, model.rate[i])
      if dim_wait_ms > wait_ms then wait_ms, reason = dim_wait_ms, DIMS[i] end
    end
  end
  return ceil(wait_ms), reason
end
