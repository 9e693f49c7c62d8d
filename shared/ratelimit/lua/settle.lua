-- settle / release: credit (amount > 0, clamped at capacity) or charge (amount < 0, may go into debt)
-- each bucket dimension, and give back day-counter requests if the day has not turned.
-- KEYS: limits, bucket.  ARGV: rpm, tpm, ipm amounts, rpd give-back, utc_offset_ms.
-- Reply: flat {dim, level, ...} after the change.
local model = read_model(KEYS[1])
if model == nil then return {} end
local now = now_ms()
local bucket = read_bucket(KEYS[2])
local levels = current_levels(bucket, model, now)
for i = 1, 3 do
  if levels[i] then levels[i] = credit(levels[i], tonumber(ARGV[i]), model.cap[i]) end
end

local offset_ms = tonumber(ARGV[5])
local give_back = tonumber(ARGV[4])
local count = day_count(bucket, now, offset_ms)
if give_back > 0 and count > 0 then
  save_levels(KEYS[2], levels, now, day_index(now, offset_ms), max(0, count - give_back))
else
  save_levels(KEYS[2], levels, now)
end
return flat_levels(levels)
