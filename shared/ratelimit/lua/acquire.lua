-- acquire: one atomic decision for one model, all dimensions or none.
-- KEYS: limits, bucket, state (one model, one hash slot).
-- ARGV: requests, tokens, images, max_wait_ms, utc_offset_ms (Pacific), probe_ms.
-- Reply: {status, delay_ms, wait_ms, reason, now_ms, probe}.
local costs = {rpm = tonumber(ARGV[1]), tpm = tonumber(ARGV[2]), ipm = tonumber(ARGV[3])}
local max_wait_ms = tonumber(ARGV[4])
local offset_ms = tonumber(ARGV[5])
local probe_ms = tonumber(ARGV[6])

local limits = hash_table(KEYS[1])
local now = now_ms()
if next(limits) == nil then return {'unconfigured', 0, 0, '', now, 0} end

local state = hash_table(KEYS[3])
local unavailable_until_ms = num(state, 'unavailable_until_ms', 0)
if now < unavailable_until_ms then
  return {'unavailable', 0, unavailable_until_ms - now, state['unavailable_reason'] or 'unavailable', now, 0}
end
local half_open = state['half_open'] == '1'
local probe_until_ms = num(state, 'probe_until_ms', 0)
if half_open and now < probe_until_ms then
  return {'unavailable', 0, probe_until_ms - now, 'probing', now, 0}
end

local bucket = hash_table(KEYS[2])
local rpd_limit = effective_limit(num(limits, 'rpd', 0), num(limits, 'safety', 0.99))
local count = day_count(bucket, now, offset_ms)
local counts_today = rpd_limit > 0 and costs.rpm > 0
-- Never a delayed grant across midnight: it would belong to tomorrow's count.
if counts_today and count + costs.rpm > rpd_limit then
  return {'wait', 0, next_midnight_ms(now, offset_ms) - now, 'rpd', now, 0}
end

local specs = bucket_specs(limits)
local levels = current_levels(bucket, specs, now)
local cooldown_ms = math.max(0, num(state, 'cooldown_until_ms', 0) - now)
local wait_ms, reason = plan(levels, costs, specs, cooldown_ms, 'cooldown')
if wait_ms > max_wait_ms then return {'wait', 0, wait_ms, reason, now, 0} end

for dim, spec in pairs(specs) do
  if costs[dim] > 0 then levels[dim] = level_after(levels[dim], costs[dim], spec, wait_ms) end
end
save_levels(KEYS[2], levels, now)
if counts_today then
  redis.call('HSET', KEYS[2], 'rpd_day', day_index(now, offset_ms), 'rpd_count', count + costs.rpm)
end
local probe = 0
if half_open then
  redis.call('HSET', KEYS[3], 'probe_until_ms', fmt(now + wait_ms + probe_ms))
  probe = 1
  reason = 'probe'
end
return {'granted', wait_ms, 0, reason, now, probe}
