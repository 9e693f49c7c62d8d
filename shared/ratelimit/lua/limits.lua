-- limits: the one place the effective limits are written. Effective = the catalog's limits (written
-- by every worker at start) overlaid with the operator's override (genpool limits set / reset).
-- KEYS: limits (effective, what acquire reads), catalog, override.
-- ARGV: mode (sync | seed | set | reset), n (catalog items), catalog field/value items..., override items...
--   sync: the catalog is replaced by the given one (a worker starting with its catalog);
--   seed: only if the model has no effective limits at all (first use of a model);
--   set: the override gains the given fields; reset: the override is dropped.
--   set / reset use the stored catalog, or the given one when none is stored yet.
-- Reply: {old effective items, new effective items}.
local mode, n = ARGV[1], tonumber(ARGV[2])
local old = redis.call('HGETALL', KEYS[1])
if mode == 'seed' and #old > 0 then return {old, old} end

local catalog = {}
for i = 3, 2 + n do catalog[#catalog + 1] = ARGV[i] end
if mode == 'sync' or redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[2])
  if #catalog > 0 then redis.call('HSET', KEYS[2], unpack(catalog)) end
end
if mode == 'set' and #ARGV > 2 + n then
  redis.call('HSET', KEYS[3], unpack(ARGV, 3 + n))
elseif mode == 'reset' then
  redis.call('DEL', KEYS[3])
end

local effective = {}
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  local items = redis.call('HGETALL', key)
  for i = 1, #items, 2 do effective[items[i]] = items[i + 1] end
end
local flat = {}
for field, value in pairs(effective) do
  flat[#flat + 1] = field
  flat[#flat + 1] = value
end
redis.call('DEL', KEYS[1])
if #flat > 0 then redis.call('HSET', KEYS[1], unpack(flat)) end
return {old, flat}
