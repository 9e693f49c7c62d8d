-- levels: what the window counts for the next possible start (read only), plus requests left today.
-- KEYS: limits, window, slots.  ARGV: utc_offset_ms.
-- Reply: flat {dim, used, ..., 'ahead_ms', ms booked ahead, ['rpd', requests left today]}.
local model = read_model(KEYS[1])
if model == nil then return {} end
local now = now_ms()
local w = read_window(KEYS[2], KEYS[3], model, true)
expire(w, model, KEYS[3], max(now, w.last))
local out = usage(model, w, now)
if model.rpd > 0 then
  out[#out + 1] = 'rpd'
  out[#out + 1] = model.rpd - day_count(w, now, tonumber(ARGV[1]))
end
return out
