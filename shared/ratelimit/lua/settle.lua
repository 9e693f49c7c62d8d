-- settle / release: correct what a grant counted in its start slot once the real use is known.
-- A refund (delta < 0) lowers the slot (never below 0); a charge (delta > 0) raises it, or, when its
-- slot is gone from a live record (a slot-size change folded it into the newest), the newest slot (it
-- then counts longer: safe). A start older than the oldest live slot no longer counts for any start to
-- come (acquire dropped it for good), so its correction changes nothing. Day-counter requests are
-- given back if the day has not turned.
-- The common case returns from settle_fast.lua (run first); this is the general path.
-- Runs for an answered call whose use differs from its reservation (or that held money; the runner skips
-- the call otherwise): no limits needed (the header knows its slot size), so it is a GET and a
-- SET of the header, plus one slot field when the start is not in the newest slot; the clock only when
-- the day counter or a budget (_budget.lua) is touched.
-- KEYS: window, slots, then the budget records the grant held money in, if any.
-- ARGV: start_ms, requests, tokens, images deltas, rpd give-back, utc_offset_ms, [held_micro, actual_micro].
-- Reply: flat {'rpm', n, 'tpm', n, 'ipm', n}: what the live record counts after the change, then
-- 'alert:<i>', level per budget that crossed an alert level.
local w = read_window(KEYS[1], KEYS[2], nil, false, PRE)  -- PRE: settle_fast.lua's read, or nil
local offset_ms = tonumber(ARGV[6])
if w.lo then
  local k = floor(tonumber(ARGV[1]) / w.slot)
  local d = {tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])}
  if k >= w.lo and k <= w.hi and not adjust_slot(w, KEYS[2], k, d) and (d[1] > 0 or d[2] > 0 or d[3] > 0) then
    for i = 1, 3 do
      local c = max(0, d[i])
      w.h[i], w.sums[i] = w.h[i] + c, w.sums[i] + c
    end
  end
  local give_back = tonumber(ARGV[5])
  if give_back > 0 and w.count > 0 and w.day == day_index(now_ms(), offset_ms) then
    w.count = max(0, w.count - give_back)
  end
  save_header(KEYS[1], w)
end
local out = {'rpm', w.sums[1], 'tpm', w.sums[2], 'ipm', w.sums[3]}
if #KEYS > 2 then budget_library().settle(3, tonumber(ARGV[7]), tonumber(ARGV[8]), now_ms(), offset_ms, out) end
return out
