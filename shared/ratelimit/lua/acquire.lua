-- acquire: one atomic decision for one model, all dimensions or none.
-- KEYS: limits, bucket, state (one model, one hash slot).
-- ARGV: requests, tokens, images, max_wait_ms, utc_offset_ms (Pacific), probe_ms.
-- Reply: one string 'status|delay_ms|wait_ms|now_ms|probe|reason' (a single bulk string parses
-- faster in redis-py than a six-element array; reason last, as an operator's text may hold '|').
local costs = {rpm = tonumber(ARGV[1]), tpm = tonumber(ARGV[2]), ipm = tonumber(ARGV[3])}
local max_wait_ms = tonumber(ARGV[4])
local offset_ms = tonumber(ARGV[5])
local probe_ms = tonumber(ARGV[6])

local function reply(status, delay_ms, wait_ms, now, probe, reason)
  return string.format('%s|%d|%d|%d|%d|%s', status, delay_ms, math.ceil(wait_ms), now, probe, reason)
end

local limits = read_limits(KEYS[1])
local now = now_ms()
if limits == nil then return reply('unconfigured', 0, 0, now, 0, '') end

local state = redis.call('HMGET', KEYS[3], 'unavailable_until_ms', 'unavailable_reason', 'half_open',
                         'probe_until_ms', 'cooldown_until_ms')
local unavailable_until_ms = tonumber(state[1]) or 0
if now < unavailable_until_ms then
  return reply('unavailable', 0, unavailable_until_ms - now, now, 0, state[2] or 'unavailable')
end
local half_open = state[3] == '1'
local probe_until_ms = tonumber(state[4]) or 0
if half_open and now < probe_until_ms then
  return reply('unavailable', 0, probe_until_ms - now, now, 0, 'probing')
end

local bucket = read_bucket(KEYS[2])
local rpd_limit = effective_limit(limits.rpd, limits.safety)
local count = day_count(bucket, now, offset_ms)
local counts_today = rpd_limit > 0 and costs.rpm > 0
-- Never a delayed grant across midnight: it would belong to tomorrow's count.
if counts_today and count + costs.rpm > rpd_limit then
  return reply('wait', 0, next_midnight_ms(now, offset_ms) - now, now, 0, 'rpd')
end

local specs = bucket_specs(limits)
local levels = current_levels(bucket, specs, now)
local cooldown_ms = math.max(0, (tonumber(state[5]) or 0) - now)
local wait_ms, reason = plan(levels, costs, specs, cooldown_ms, 'cooldown')
if wait_ms > max_wait_ms then return reply('wait', 0, wait_ms, now, 0, reason) end

for dim, spec in pairs(specs) do
  if costs[dim] > 0 then levels[dim] = level_after(levels[dim], costs[dim], spec, wait_ms) end
end
local day = nil
if counts_today then day = {'rpd_day', day_index(now, offset_ms), 'rpd_count', count + costs.rpm} end
save_levels(KEYS[2], levels, now, day)
local probe = 0
if half_open then
  redis.call('HSET', KEYS[3], 'probe_until_ms', fmt(now + wait_ms + probe_ms))
  probe, reason = 1, 'probe'
end
return reply('granted', wait_ms, 0, now, probe, reason)
