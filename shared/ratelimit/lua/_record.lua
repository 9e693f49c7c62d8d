-- The record's format and the limit rule, in one place: scripts.py puts this file first in every limiter
-- script, before the fast paths (acquire_fast.lua, settle_fast.lua) and the window library (_window.lua),
-- which all read and write the record with these. A few locals and two small functions: building them
-- costs the fast paths nothing measurable (their gain is not building the library's ~30 closures).
-- Mirrors shared/ratelimit/strategy.py (SLOTS_PER_WINDOW, EPSILON, effective_limit, slot size).
local EPSILON = 1e-9
local SLOTS_PER_WINDOW = 600
local DAY_MS = 86400000
local DEFAULT_WINDOW_MS, DEFAULT_GUARD_MS = 60000, 500  -- a limits hash without them: ModelLimits' defaults

-- The header is one string of integers (one GET, one SET: a hash of ten fields costs several times
-- more Redis CPU per acquire), -1 for none:
--   slot_ms lo hi last_ms s1 s2 s3 rpd_day rpd_count h1 h2 h3
-- s1..s3 sum the live slots; h1..h3 are the newest slot's own counts, kept here until a newer slot
-- starts: a burst of starts in one slot writes nothing but the header.
local HEADER = '^(-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+) (-?%d+)$'
local HEADER_FORMAT = '%d %d %d %d %d %d %d %d %d %d %d %d'
-- A slot's fields in the slots hash: 'r t i next' (next = the next live slot).
local SLOT = '^(-?%d+) (-?%d+) (-?%d+) (-?%d+)$'
local SLOT_FORMAT = '%d %d %d %d'

-- L' = floor(L * safety), at least 1; 0 (no limit) stays 0.
local function effective_limit(limit, safety)
  if limit <= 0 then return 0 end
  return math.max(1, math.floor(limit * safety + EPSILON))
end

local function slot_ms_of(window_ms)
  return math.max(1, math.ceil(window_ms / SLOTS_PER_WINDOW))
end

-- The provider's day (Pacific; offset_ms: the client's current UTC offset) that ``now`` falls in.
local function day_index(now, offset_ms)
  return math.floor((now + offset_ms) / DAY_MS)
end
