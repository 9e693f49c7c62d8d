-- penalize: a 429 from the provider. Fleet-wide cooldown (never shortened) and the affected bucket
-- dimensions drained to zero, so the fleet resumes at the refill rate instead of with a burst.
-- KEYS: limits, bucket, state.  ARGV: retry_after_ms, scope (minute|rpm|tpm|ipm|day; minute = every bucket), utc_offset_ms.
-- Reply: cooldown_until_ms.
local retry_after_ms = tonumber(ARGV[1])
local scope = ARGV[2]
local offset_ms = tonumber(ARGV[3])
local now = now_ms()

local until_ms = now + retry_after_ms
if scope == 'day' then until_ms = next_midnight_ms(now, offset_ms) end
local state = hash_table(KEYS[3])
until_ms = math.max(until_ms, num(state, 'cooldown_until_ms', 0))
redis.call('HSET', KEYS[3], 'cooldown_until_ms', fmt(until_ms))

local limits = hash_table(KEYS[1])
if scope ~= 'day' and next(limits) ~= nil then
  local specs = bucket_specs(limits)
  local levels = current_levels(hash_table(KEYS[2]), specs, now)
  for dim, level in pairs(levels) do
    if scope == 'minute' or scope == dim then levels[dim] = math.min(level, 0) end
  end
  save_levels(KEYS[2], levels, now)
end
return until_ms
