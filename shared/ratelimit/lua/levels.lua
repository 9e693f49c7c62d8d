-- levels: bucket levels refilled to now (read only), plus requests left today under rpd.
-- KEYS: limits, bucket.  ARGV: utc_offset_ms.  Reply: flat {dim, level, ..., 'rpd', left}.
local limits = read_limits(KEYS[1])
if limits == nil then return {} end
local now = now_ms()
local bucket = read_bucket(KEYS[2])
local out = flat_levels(current_levels(bucket, bucket_specs(limits), now))
local rpd_limit = effective_limit(limits.rpd, limits.safety)
if rpd_limit > 0 then
  out[#out + 1] = 'rpd'
  out[#out + 1] = fmt(rpd_limit - day_count(bucket, now, tonumber(ARGV[1])))
end
return out
