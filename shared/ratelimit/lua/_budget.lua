-- Budgets, prepended (after _window.lua) to the scripts that read or write them: acquire, settle, budget.
-- USD per Pacific day in integer micro-USD, for one model (a hash in the model's own hash tag) and for the
-- whole pool (one more key: not Cluster slot-safe). Acquire and settle take the budget records as extra
-- KEYS after their own, only when a budget is set: with none, nothing more is read or written.
-- A record (hash): limit, day, spent (settled today), held (granted calls not settled yet), held_ms (when
-- the latest hold was taken), alerted (the highest alert level already reported today).
-- Mirrors shared/budget.py (ReferenceBudget) operation for operation; the contract tests compare them.
--
-- One function returning the others: a script pays for creating them only when a budget is set (eight
-- closures per call cost acquire ~4 % more Redis instructions with no budget in sight).
local function budget_library()
  local HOLD_MAX_MS = 900000  -- no call runs this long (timeouts are far shorter): holds older are leaked
  local HELD_WAIT_MS = 1000   -- the wait when calls in flight hold the rest of the budget
  local ALERT_LEVELS = {50, 80, 100}
  local lib = {}

  function lib.read(key, today, now)
    local v = redis.call('HMGET', key, 'limit', 'day', 'spent', 'held', 'held_ms', 'alerted')
    local b = {key = key, limit = tonumber(v[1]) or 0, spent = 0, held = 0, held_ms = tonumber(v[5]) or 0,
               alerted = 0}
    if tonumber(v[2]) == today then
      b.spent, b.held, b.alerted = tonumber(v[3]) or 0, tonumber(v[4]) or 0, tonumber(v[6]) or 0
    end
    -- The latest hold is older than any call: every call that held money has settled or died with its worker.
    if now - b.held_ms > HOLD_MAX_MS then b.held = 0 end
    return b
  end

  function lib.save(b, today)
    redis.call('HSET', b.key, 'day', today, 'spent', b.spent, 'held', b.held, 'held_ms', b.held_ms,
               'alerted', b.alerted)
  end

  -- '' a call may start; 'budget' today's budget is spent (until the day turns); 'budget_held' calls in
  -- flight hold the rest of it (they settle within seconds and may give some back).
  function lib.verdict(b)
    if b.limit <= 0 then return '' end
    if b.spent >= b.limit then return 'budget' end
    if b.spent + b.held >= b.limit then return 'budget_held' end
    return ''
  end

  -- The highest alert level ``spent`` has reached (0: below the first).
  function lib.alert_level(spent, limit)
    local level = 0
    if limit <= 0 then return level end
    for _, pct in ipairs(ALERT_LEVELS) do
      if spent * 100 >= pct * limit then level = pct end
    end
    return level
  end

  -- Every budget in KEYS[from..]: the records, and the verdict with its wait ('budget' wins over 'budget_held').
  function lib.check(from, now, offset_ms)
    local today, list, held = day_index(now, offset_ms), {}, false
    for i = from, #KEYS do
      local b = lib.read(KEYS[i], today, now)
      local verdict = lib.verdict(b)
      if verdict == 'budget' then return list, verdict, next_midnight_ms(now, offset_ms) - now end
      held = held or verdict == 'budget_held'
      list[#list + 1] = b
    end
    if held then return list, 'budget_held', HELD_WAIT_MS end
    return list, '', 0
  end

  -- A granted call holds its estimated cost in every budget that has a limit.
  function lib.hold(list, cost, now, offset_ms)
    for _, b in ipairs(list) do
      if b.limit > 0 then
        b.held, b.held_ms = b.held + cost, now
        lib.save(b, day_index(now, offset_ms))
      end
    end
  end

  -- The call is over: its hold goes, its real cost is spent; ``out`` gains 'alert:<i>', level for each
  -- budget (i-th of KEYS[from..]) whose spend crossed an alert level now (once per level and day, fleet-wide).
  function lib.settle(from, held, actual, now, offset_ms, out)
    local today = day_index(now, offset_ms)
    for i = from, #KEYS do
      local b = lib.read(KEYS[i], today, now)
      b.held = max(0, b.held - held)
      b.spent = b.spent + actual
      local level = lib.alert_level(b.spent, b.limit)
      if level > b.alerted then
        b.alerted = level
        out[#out + 1] = 'alert:' .. (i - from + 1)
        out[#out + 1] = level
      end
      lib.save(b, today)
    end
  end

  return lib
end
