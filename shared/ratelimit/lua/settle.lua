-- settle / release: credit (amount > 0, clamped at capacity) or charge (amount < 0, may go into debt)
-- each bucket dimension, and give back day-counter requests if the day has not turned.
-- KEYS: limits, bucket.  ARGV: rpm, tpm, ipm amounts, rpd give-back, utc_offset_ms.
-- Reply: flat {dim, level, ...} after the change.
local limits = hash_table(KEYS[1])
if next(limits) == nil then return {} end
local now = now_ms()
local bucket = hash_table(KEYS[2])
local specs = bucket_specs(limits)
local levels = current_levels(bucket, specs, now)
local amounts = {rpm = tonumber(ARGV[1]), tpm = tonumber(ARGV[2]), ipm = tonumber(ARGV[3])}
for dim, spec in pairs(specs) do
  levels[dim] = credit(levels[dim], amounts[dim], spec)
end
save_levels(KEYS[2], levels, now)

local give_back = tonumber(ARGV[4])
local offset_ms = tonumber(ARGV[5])
local count = day_count(bucket, now, offset_ms)
if give_back > 0 and count > 0 then
  redis.call('HSET', KEYS[2], 'rpd_count', math.max(0, count - give_back))
end
return flat_levels(levels)
