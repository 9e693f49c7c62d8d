-- Shared by every limiter script: scripts.py prepends this file to each one before loading it.
-- The bucket math mirrors shared/ratelimit/strategy.py operation for operation, so both give
-- bit-identical doubles for the same inputs (the contract tests compare them).
local EPSILON = 1e-9
local DAY_MS = 86400000
local DIMS = {'rpm', 'tpm', 'ipm'}

local function hash_table(key)
  local flat = redis.call('HGETALL', key)
  local out = {}
  for i = 1, #flat, 2 do out[flat[i]] = flat[i + 1] end
  return out
end

local function num(t, field, default)
  local value = tonumber(t[field])
  if value == nil then return default end
  return value
end

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

local function effective_limit(limit, safety)
  if limit <= 0 then return 0 end
  return math.max(1, math.floor(limit * safety + EPSILON))
end

-- specs[dim] = {limit = L', capacity = C, rate = (L' - C) / window per ms}, limited dims only.
local function bucket_specs(limits)
  local window_ms = num(limits, 'window_ms', 60000)
  local safety = num(limits, 'safety', 0.99)
  local specs = {}
  for _, dim in ipairs(DIMS) do
    local burst = num(limits, 'burst', 0.01)
    if dim == 'tpm' then burst = num(limits, 'token_burst', 0.05) end
    local eff = effective_limit(num(limits, dim, 0), safety)
    if eff > 0 then
      local cap = math.max(1, math.min(math.ceil(eff * burst - EPSILON), eff - 1))
      specs[dim] = {limit = eff, capacity = cap, rate = math.max(1, eff - cap) / window_ms}
    end
  end
  return specs
end

-- Levels refilled to now; a dimension never seen starts full.
local function current_levels(bucket, specs, now)
  local elapsed = math.max(0, now - num(bucket, 'ts_ms', now))
  local levels = {}
  for dim, spec in pairs(specs) do
    levels[dim] = math.min(spec.capacity, num(bucket, dim, spec.capacity) + spec.rate * elapsed)
  end
  return levels
end

local function save_levels(key, levels, now)
  local args = {'ts_ms', fmt(now)}
  for dim, level in pairs(levels) do
    args[#args + 1] = dim
    args[#args + 1] = fmt(level)
  end
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
  if num(bucket, 'rpd_day', -1) ~= day_index(now, offset_ms) then return 0 end
  return num(bucket, 'rpd_count', 0)
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
