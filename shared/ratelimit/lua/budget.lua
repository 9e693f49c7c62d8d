-- budget: an operator sets a budget's limit (`genpool budget set`): micro-USD per Pacific day, 0 = none.
-- Today's spend is at least ``seed``: what the metrics counted today, including what was spent before the
-- budget existed (or while it was unset). The alert level restarts at the highest level already passed,
-- so workers report the next crossing, not the ones before it.
-- KEYS: the budget record.  ARGV: limit_micro, seed_micro, utc_offset_ms.
-- Reply: {limit, spent, held} after the change (today's).
local budget = budget_library()
local now = now_ms()
local today = day_index(now, tonumber(ARGV[3]))
local b = budget.read(KEYS[1], today, now)
b.limit = tonumber(ARGV[1])
b.spent = max(b.spent, tonumber(ARGV[2]))
b.alerted = budget.alert_level(b.spent, b.limit)
if b.limit > 0 then
  redis.call('HSET', KEYS[1], 'limit', b.limit)
else
  redis.call('HDEL', KEYS[1], 'limit')
end
budget.save(b, today)
return {b.limit, b.spent, b.held}
