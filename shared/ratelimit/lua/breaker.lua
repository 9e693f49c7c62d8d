-- Fleet-wide model availability: a circuit breaker per model in the model's state hash.
-- KEYS[1] = state hash (keys.model_state(model))
-- ARGV[1] = "ok" | "fail" | "down"  (down = mark unavailable now, e.g. 404 retired model)
-- ARGV[2] = failure threshold (consecutive-ish failures within the window that open the breaker)
-- ARGV[3] = failure window in ms
-- ARGV[4] = open period in ms (how long every worker skips the model; for "down", the whole period)
-- ARGV[5] = reason recorded when opening
-- ARGV[6] = longest open period in ms: each failed half-open probe doubles the period up to this, so a
--           long outage costs one probing job per few minutes, not one per open period
-- ARGV[7] = when the failed call was granted (Redis clock, ms; 0 = unknown): a call granted before the
--           breaker opened (or in its very millisecond: a probe comes only after the open period) is a
--           straggler of the outage already counted and does not re-open it
-- Returns 1 when the model is open after this call (this failure opened it, or it already was: a caller
-- should not retry the model then), 0 otherwise.
-- After the open period the acquire script lets exactly one caller through as a probe (half_open);
-- a success closes the breaker, a failure opens it again.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local outcome = ARGV[1]
local open_ms = tonumber(ARGV[4])

local function open(reason, period_ms)
  redis.call('HSET', key, 'unavailable_until_ms', now + period_ms, 'unavailable_reason', reason,
             'half_open', '1', 'probe_until_ms', 0, 'fail_count', 0, 'opened_at_ms', now, 'open_ms', period_ms)
  redis.call('HINCRBY', key, 'opened_total', 1)
  return 1
end

if outcome == 'ok' then
  if redis.call('HGET', key, 'half_open') == '1' or redis.call('HEXISTS', key, 'fail_count') == 1 then
    redis.call('HDEL', key, 'half_open', 'probe_until_ms', 'fail_count', 'fail_window_ms',
               'unavailable_until_ms', 'unavailable_reason', 'open_ms')
  end
  return 0
end

if outcome == 'down' then
  return open(ARGV[5], open_ms)
end

-- a failed probe (or any failure once the open period is over) re-opens at once, for longer
if redis.call('HGET', key, 'half_open') == '1' then
  local until_ms = tonumber(redis.call('HGET', key, 'unavailable_until_ms') or '0')
  local granted_at = tonumber(ARGV[7] or '0')
  if granted_at > 0 and granted_at <= tonumber(redis.call('HGET', key, 'opened_at_ms') or '0') then
    return 1
  end
  if until_ms <= now then
    local last_ms = tonumber(redis.call('HGET', key, 'open_ms') or '0')
    return open(ARGV[5], math.max(open_ms, math.min(2 * last_ms, tonumber(ARGV[6]))))
  end
  return 1
end

local start = tonumber(redis.call('HGET', key, 'fail_window_ms') or '0')
local count = tonumber(redis.call('HGET', key, 'fail_count') or '0')
if now - start > tonumber(ARGV[3]) then
  start = now
  count = 0
end
count = count + 1
if count >= tonumber(ARGV[2]) then
  return open(ARGV[5], open_ms)
end
redis.call('HSET', key, 'fail_count', count, 'fail_window_ms', start)
return 0
