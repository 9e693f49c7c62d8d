-- penalize: a 429 from the provider. Fleet-wide cooldown (never shortened), and the provider's
-- window is full: the record is topped up to L' in the scope's dimensions at the latest start, so
-- after the cooldown the fleet starts only as what it counted leaves the window, not with a burst.
-- KEYS: limits, window, state, slots.
-- ARGV: retry_after_ms, scope (minute = every dimension | rpm | tpm | ipm | day), utc_offset_ms.
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
  local w = read_window(KEYS[2], KEYS[4], model, false)
  local at = max(now, w.last)
  expire(w, model, KEYS[4], at)
  flush(w, KEYS[4])
  local fill, any = {0, 0, 0}, false
  for i = 1, 3 do
    if model.lim[i] > 0 and (scope == 'minute' or scope == DIMS[i]) then
      fill[i] = max(0, model.lim[i] - w.sums[i])
      any = any or fill[i] > 0
    end
  end
  if any then
    add(w, model, KEYS[4], slot_of(model, at), fill, now)
    w.last = at
  end
  save_header(KEYS[2], w)
end
return until_ms
