-- Shared by every limiter script: scripts.py prepends this file to each one before loading it.
-- The bucket math mirrors shared/ratelimit/strategy.py operation for operation, so both give
-- bit-identical doubles for the same inputs (the contract tests compare them).
-- Hashes are read with HMGET of known fields (cheaper than HGETALL into a table: this runs on every
-- acquire of every worker).
local EPSILON = 1e-9
local DAY_MS = 86400000
local DIMS = {'rpm', 'tpm', 'ipm'}

local function fmt(x)
  return string.format('%.17g', x)
end

-- Redis's clock, whole milliseconds: one clock for every worker on every machine.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function day_index(now, offset_ms)
  return math.floor((now + offset_ms) / DAY_MS)
end

local function next_midnight_ms(now, offset_ms)
  return (day_index(now, offset_ms) + 1) * DAY_MS - offset_ms
end

-- The limits hash as numbers with the ModelLimits defaults, or nil when the model has none.
local function read_limits(key)
  local v = redis.call('HMGET', key, 'rpm', 'tpm', 'ipm', 'rpd', 'window_ms', 'safety', 'burst', 'token_burst')
  if not (v[1] or v[2] or v[3] or v[4] or v[5] or v[6] or v[7] or v[8]) then return nil end
  return {rpm = tonumber(v[1]) or 0, tpm = tonumber(v[2]) or 0, ipm = tonumber(v[3]) or 0,
          rpd = tonumber(v[4]) or 0, window_ms = tonumber(v[5]) or 60000, safety = tonumber(v[6]) or 0.99,
          burst = tonumber(v[7]) or 0.01, token_burst = tonumber(v[8]) or 0.05}
end

-- The bucket hash: levels (nil = never seen), their time, and the day counter.
local function read_bucket(key)
  local v = redis.call('HMGET', key, 'ts_ms', 'rpm', 'tpm', 'ipm', 'rpd_day', 'rpd_count')
  return {ts_ms = tonumber(v[1]), rpm = tonumber(v[2]), tpm = tonumber(v[3]), ipm = tonumber(v[4]),
          rpd_day = tonumber(v[5]) or -1, rpd_count = tonumber(v[6]) or 0}
end

local function effective_limit(limit, safety)
  if limit <= 0 then return 0 end
  return math.max(1, math.floor(limit * safety + EPSILON))
end

-- specs[dim] = {limit = L', capacity = C, rate = (L' - C) / window per ms}, limited dims only.
local function bucket_specs(limits)
  local specs = {}
  for _, dim in ipairs(DIMS) do
    local burst = limits.burst
    if dim == 'tpm' then burst = limits.token_burst end
    local eff = effective_limit(limits[dim], limits.safety)
    if eff > 0 then
      local cap = math.max(1, math.min(math.ceil(eff * burst - EPSILON), eff - 1))
      specs[dim] = {limit = eff, capacity = cap, rate = math.max(1, eff - cap) / limits.window_ms}
    end
  end
  return specs
end

-- Levels refilled to now; a dimension never seen starts full.
local function current_levels(bucket, specs, now)
  local elapsed = math.max(0, now - (bucket.ts_ms or now))
  local levels = {}
  for dim, spec in pairs(specs) do
    levels[dim] = math.min(spec.capacity, (bucket[dim] or spec.capacity) + spec.rate * elapsed)
  end
  return levels
end

-- One HSET: the levels at ``now`` plus any extra field/value pairs.
local function save_levels(key, levels, now, extra)
  local args = {'ts_ms', fmt(now)}
  for dim, level in pairs(levels) do
    args[#args + 1] = dim
    args[#args + 1] = fmt(level)
  end
  for i = 1, #(extra or {}) do args[#args + 1] = extra[i] end
  redis.call('HSET', key, unpack(args))
end

local function flat_levels(levels)
  local out = {}
  for _, dim in ipairs(DIMS) do
    if levels[dim] ~= nil then
      out[#out + 1] = dim
      out[#out + 1] = fmt(levels[dim])
    end
  end
  return out
end

-- Today's request count (0 once the Pacific day has turned).
local function day_count(bucket, now, offset_ms)
  if bucket.rpd_day ~= day_index(now, offset_ms) then return 0 end
  return bucket.rpd_count
end

local function wait_for(level, cost, spec)
  local need = math.min(cost, spec.capacity)
  if cost <= 0 or level >= need then return 0 end
  return (need - level) / spec.rate
end

local function level_after(level, cost, spec, delay_ms)
  local ahead = spec.rate * delay_ms
  return math.min(spec.capacity, level + ahead) - cost - ahead
end

local function credit(level, amount, spec)
  if amount > 0 then return math.min(spec.capacity, level + amount) end
  return level + amount
end

local function plan(levels, costs, specs, floor_wait_ms, floor_reason)
  local wait_ms, reason = 0, ''
  if floor_wait_ms > 0 then wait_ms, reason = floor_wait_ms, floor_reason end
  for _, dim in ipairs(DIMS) do
    local spec = specs[dim]
    if spec ~= nil and costs[dim] > 0 then
      local dim_wait_ms = wait_for(levels[dim], costs[dim], spec)
      if dim_wait_ms > wait_ms then wait_ms, reason = dim_wait_ms, dim end
    end
  end
  return math.ceil(wait_ms), reason
end
