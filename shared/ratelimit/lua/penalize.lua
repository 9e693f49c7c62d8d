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
until_ms = max(until_ms, tonumber(redis.call('HGET', KEYS[3], 'cooldown_until_ms')) or 0)
redis.call('HSET', KEYS[3], 'cooldown_until_ms', until_ms)

local model = read_model(KEYS[1])
if scope ~= 'day' and model ~= nil then
  local levels = current_levels(read_bucket(KEYS[2]), model, now)
  for i = 1, 3 do
    if levels[i] and (scope == 'minute' or scope == DIMS[i]) then levels[i] = min(levels[i], 0) end
  end
  save_levels(KEYS[2], levels, now)
end
return until_ms
