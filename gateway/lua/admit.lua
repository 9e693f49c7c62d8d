-- Admit `cost` requests of one account: its USD budget for the day, then its requests per minute.
-- KEYS[1] rate state (GCRA: the theoretical arrival time, ms)  KEYS[2] the account's spend today (USD)
-- ARGV[1] requests per minute  ARGV[2] cost (requests)  ARGV[3] USD per day, or -1: do not check the budget
-- Returns {status, retry_after_ms}: 0 admitted, 1 over the rate, 2 over the budget, 3 cost above a minute's rate.
-- The rate is a GCRA with a burst of one minute: `rpm` requests at once, then one every 60000/rpm ms.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local rpm = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])

if budget >= 0 then
  local spent = tonumber(redis.call('GET', KEYS[2]) or '0')
  if spent >= budget then
    return {2, 0}
  end
end

local interval = 60000 / rpm
if cost * interval > 60000 then
  return {3, 0}
end
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
  tat = now
end
local new_tat = tat + cost * interval
local allowed_at = new_tat - 60000
if allowed_at > now then
  return {1, math.ceil(allowed_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1000)
return {0, 0}
