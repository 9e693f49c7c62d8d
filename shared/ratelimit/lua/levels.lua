-- levels: bucket levels refilled to now (read only), plus requests left today under rpd.
-- KEYS: limits, bucket.  ARGV: utc_offset_ms.  Reply: flat {dim, level, ..., 'rpd', left}.
local limits = hash_table(KEYS[1])
if next(limits) == nil then return {} end
local now = now_ms()
local bucket = hash_table(KEYS[2])
local out = flat_levels(current_levels(bucket, bucket_specs(limits), now))
local rpd_limit = effective_limit(num(limits, 'rpd', 0), num(limits, 'safety', 0.99))
if rpd_limit > 0 then
  out[#out + 1] = 'rpd'
  out[#out + 1] = fmt(rpd_limit - day_count(bucket, now, tonumber(ARGV[1])))
end
return out
