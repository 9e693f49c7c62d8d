-- settle / release: correct what a grant counted in its start slot once the real use is known.
-- A refund (delta < 0) lowers the slot (never below 0); a charge (delta > 0) raises it, or, when its
-- slot is gone but could still count, the newest slot (it then counts longer: safe). Day-counter
-- requests are given back if the day has not turned.
-- KEYS: limits, window, slots, then the budget records the grant held money in (_budget.lua), if any.
-- ARGV: start_ms, requests, tokens, images deltas, rpd give-back, utc_offset_ms, [held_micro, actual_micro].
-- Reply: flat {dim, used, ..., 'ahead_ms', ms} after the change, then 'alert:<i>', level per budget that
-- crossed an alert level.
local model = read_model(KEYS[1])
if model == nil then return {} end
local now = now_ms()
local w = read_window(KEYS[2], KEYS[3], model, false)
local at = max(now, w.last)
expire(w, model, KEYS[3], at)
flush(w, KEYS[3])

local k = slot_of(model, tonumber(ARGV[1]))
local d = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
local live = w.lo and k >= w.lo and adjust_slot(w, KEYS[3], k, d)
if not live and w.lo and free_at(model, k) > at and (d[1] > 0 or d[2] > 0 or d[3] > 0) then
  add(w, model, KEYS[3], w.hi, {max(0, d[1]), max(0, d[2]), max(0, d[3])}, now)
end

local offset_ms = tonumber(ARGV[6])
local give_back = tonumber(ARGV[5])
local count = day_count(w, now, offset_ms)
if give_back > 0 and count > 0 then w.count = max(0, count - give_back) end
save_header(KEYS[2], w, model)
local out = usage(model, w, now)
if #KEYS > 3 then budget_library().settle(4, tonumber(ARGV[7]), tonumber(ARGV[8]), now, offset_ms, out) end
return out
