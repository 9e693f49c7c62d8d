-- settle's fast path: scripts.py puts this file before the libraries, like acquire_fast.lua. The common
-- settle (no budget, nothing given back to the day counter, a live record) corrects one slot with locals
-- only: the newest slot's counts in the header, an older live one's field in the slots hash; a start no
-- live slot holds changes nothing, and nothing is written. Any other case (a budget, a release's day
-- give-back, an empty record, a lost slot) hands over to settle.lua with the header already read (PRE).
-- Same KEYS, ARGV and reply as settle.lua.
local PRE = nil

-- adjust_slot() for one slot's three counts: never below 0. Returns the new counts.
local function corrected(r, t, i, d1, d2, d3)
  return math.max(0, r + d1), math.max(0, t + d2), math.max(0, i + d3)
end

local function settle_fast()
  if #KEYS ~= 2 then return nil end
  local raw = redis.call('GET', KEYS[1])
  PRE = {header = raw}
  if not raw or tonumber(ARGV[5]) > 0 then return nil end
  local slot, lo, hi, last, s1, s2, s3, day, count, h1, h2, h3 = string.match(raw, HEADER)
  if not slot then return nil end
  lo, hi = tonumber(lo), tonumber(hi)
  if lo < 0 then return nil end
  s1, s2, s3 = tonumber(s1), tonumber(s2), tonumber(s3)
  local k = math.floor(tonumber(ARGV[1]) / tonumber(slot))
  local d1, d2, d3 = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
  if k >= lo and k <= hi then
    local r, t, i, n
    if k == hi then
      r, t, i = tonumber(h1), tonumber(h2), tonumber(h3)
    else
      local field = redis.call('HGET', KEYS[2], k)
      if not field then return nil end  -- lost: a charge lands on the newest slot (settle.lua)
      r, t, i, n = string.match(field, SLOT)
      r, t, i = tonumber(r), tonumber(t), tonumber(i)
    end
    local nr, nt, ni = corrected(r, t, i, d1, d2, d3)
    s1, s2, s3 = s1 + nr - r, s2 + nt - t, s3 + ni - i
    if k == hi then
      h1, h2, h3 = nr, nt, ni
    else
      redis.call('HSET', KEYS[2], k, string.format(SLOT_FORMAT, nr, nt, ni, tonumber(n)))
    end
    redis.call('SET', KEYS[1], string.format(HEADER_FORMAT, slot, lo, hi, last,
               s1, s2, s3, day, count, h1, h2, h3))
  end
  return {'rpm', s1, 'tpm', s2, 'ipm', s3}
end

do
  local fast = settle_fast()
  if fast then return fast end
end
