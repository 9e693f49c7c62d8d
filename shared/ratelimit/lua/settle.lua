-- settle / release: credit (amount > 0, clamped at capacity) or charge (amount < 0, may go into debt)
-- each bucket dimension, and give back day-counter requests if the day has not turned.
-- KEYS: limits, bucket.  ARGV: rpm, tpm, ipm amounts, rpd give-back, utc_offset_ms.
-- Reply: flat {dim, level, ...} after the change.
local limits = read_limits(KEYS[1])
if limits == nil then return {} end
local now = now_ms()
local bucket = read_bucket(KEYS[2])
local specs = bucket_specs(limits)
local levels = current_levels(bucket, specs, now)
local amounts = {rpm = tonumber(ARGV[1]), tpm = tonumber(ARGV[2]), ipm = tonumber(ARGV[3])}
for dim, spec in pairs(specs) do
  levels[dim] = credit(levels[dim], amounts[dim], spec)
end

local give_back = tonumber(ARGV[4])
local count = day_count(bucket, now, tonumber(ARGV[5]))
local day = nil
if give_back > 0 and count > 0 then day = {'rpd_count', math.max(0, count - give_back)} end
save_levels(KEYS[2], levels, now, day)
return flat_levels(levels)
