-- penalize: a 429 from the provider. Fleet-wide cooldown (never shortened) and the affected bucket
-- dimensions drained to zero, so the fleet resumes at the refill rate instead of with a burst.
-- KEYS: limits, bucket, state.
-- ARGV: retry_after_ms, scope (minute = every bucket | rpm | tpm | ipm | day), utc_offset_ms.
-- Reply: cooldown_until_ms.
local retry_after_ms = tonumber(ARGV[1])
local scope = ARGV[2]
local offset_ms = tonumber(ARGV[3])
local now = now_ms()

local until_ms = now + retry_after_ms
if scope == 'day' then until_ms = next_midnight_ms(now, offset_ms) end
until_ms = math.max(until_ms, tonumber(redis.call('HGET', KEYS[3], 'cooldown_until_ms')) or 0)
redis.call('HSET', KEYS[3], 'cooldown_until_ms', fmt(until_ms))

local limits = read_limits(KEYS[1])
if scope ~= 'day' and limits ~= nil then
  local levels = current_levels(read_bucket(KEYS[2]), bucket_specs(limits), now)
  for dim, level in pairs(levels) do
    if scope == 'minute' or scope == dim then levels[dim] = math.min(level, 0) end
  end
  save_levels(KEYS[2], levels, now)
end
return until_ms
