-- acquire: one atomic decision for one model, all dimensions or none.
-- KEYS: limits, window, state, slots (one model, one hash slot), then the budget records, only when a budget
-- is set (the model's, the pool's: _budget.lua).
-- ARGV: requests, tokens, images, max_wait_ms, utc_offset_ms (Pacific), probe_ms, [cost_micro_usd].
-- Reply: one string 'status|delay_ms|wait_ms|now_ms|probe|reason' (a single bulk string parses
-- faster in redis-py than a six-element array; reason last, as an operator's text may hold '|').
local function reply(status, delay_ms, wait_ms, now, probe, reason)
  return string.format('%s|%d|%d|%d|%d|%s', status, delay_ms, ceil(wait_ms), now, probe, reason)
end

-- The general path: every case acquire_fast.lua (run first) hands over, with the reads it made in PRE (nil
-- when it read nothing: a budget is set).
local pre = PRE
local model = read_model(KEYS[1], pre and pre.limits)
local now = pre and pre.now or now_ms()
if model == nil then return reply('unconfigured', 0, 0, now, 0, '') end

local state = pre and pre.state or redis.call('HMGET', KEYS[3], 'unavailable_until_ms', 'unavailable_reason',
                                              'half_open', 'probe_until_ms', 'cooldown_until_ms')
local unavailable_until_ms = tonumber(state[1]) or 0
if now < unavailable_until_ms then
  return reply('unavailable', 0, unavailable_until_ms - now, now, 0, state[2] or 'unavailable')
end
local half_open = state[3] == '1'
local probe_until_ms = tonumber(state[4]) or 0
if half_open and now < probe_until_ms then
  return reply('unavailable', 0, probe_until_ms - now, now, 0, 'probing')
end

local costs = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])}
local max_wait_ms, offset_ms = tonumber(ARGV[4]), tonumber(ARGV[5])
local w = read_window(KEYS[2], KEYS[4], model, false, pre)
local count = day_count(w, now, offset_ms)
local counts_today = model.rpd > 0 and costs[1] > 0
-- Never a delayed grant across midnight: it would belong to tomorrow's count.
if counts_today and count + costs[1] > model.rpd then
  return reply('wait', 0, next_midnight_ms(now, offset_ms) - now, now, 0, 'rpd')
end

local budget, budgets = nil, nil
if #KEYS > 4 then  -- a budget is set: the call's estimated cost (ARGV[7]) must fit before anything is counted
  local verdict, budget_wait_ms
  budget = budget_library()
  budgets, verdict, budget_wait_ms = budget.check(5, now, offset_ms)
  if verdict ~= '' then return reply('wait', 0, budget_wait_ms, now, 0, verdict) end
end

local earliest = max(now, w.last)
expire(w, model, KEYS[4], earliest)  -- no later start can count these: gone for good
local mark = checkpoint(w)
local start, reason, fits = plan(w, model, KEYS[4], costs, now, earliest, tonumber(state[5]) or 0)
local wait_ms = start - now
if not fits or wait_ms > max_wait_ms then
  rollback(w, mark)
  if w.clear or #w.dead > 0 then
    flush(w, KEYS[4])
    save_header(KEYS[2], w)
  end
  return reply('wait', 0, wait_ms, now, 0, reason)
end

flush(w, KEYS[4])
add(w, model, KEYS[4], slot_of(model, start), costs, now)
w.last = start
if counts_today then
  w.day, w.count = day_index(now, offset_ms), count + costs[1]
end
save_header(KEYS[2], w)
if budget then budget.hold(budgets, tonumber(ARGV[7]), now, offset_ms) end
local probe = 0
if half_open then
  redis.call('HSET', KEYS[3], 'probe_until_ms', start + tonumber(ARGV[6]))
  probe, reason = 1, 'probe'
end
return reply('granted', wait_ms, 0, now, probe, reason)
