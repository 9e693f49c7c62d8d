-- levels: bucket levels refilled to now (read only), plus requests left today under rpd.
-- KEYS: limits, bucket.  ARGV: utc_offset_ms.  Reply: flat {dim, level, ..., 'rpd', left}.
local model = read_model(KEYS[1])
if model == nil then return {} end
local now = now_ms()
local bucket = read_bucket(KEYS[2])
local out = flat_levels(current_levels(bucket, model, now))
if model.rpd > 0 then
  out[#out + 1] = 'rpd'
  out[#out + 1] = string.format('%.17g', model.rpd - day_count(bucket, now, tonumber(ARGV[1])))
end
return out
