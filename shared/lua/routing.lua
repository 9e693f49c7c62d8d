-- routing: the one writer of the routing in force. Effective = the chains of the catalog + environment
-- (written by every worker at start) overlaid with an operator's override (chains and A/B splits, until
-- rollback). The version goes up by one whenever the effective routing changes: workers poll it.
-- KEYS: effective, catalog, override.
-- ARGV: mode (sync | set | rollback), then items:
--   sync: field value ... (the catalog's, replacing the stored catalog whole);
--   set: field value ... (into the override; an empty value drops the field);
--   rollback: field ... (dropped from the override).
-- Reply: {old effective items, new effective items}, both with their 'version'.
local mode = ARGV[1]
if mode == 'sync' then
  redis.call('DEL', KEYS[2])
  if #ARGV > 1 then redis.call('HSET', KEYS[2], unpack(ARGV, 2)) end
elseif mode == 'set' then
  for i = 2, #ARGV - 1, 2 do
    if ARGV[i + 1] == '' then
      redis.call('HDEL', KEYS[3], ARGV[i])
    else
      redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
    end
  end
elseif mode == 'rollback' and #ARGV > 1 then
  redis.call('HDEL', KEYS[3], unpack(ARGV, 2))
end

local old = redis.call('HGETALL', KEYS[1])
local before, after = {}, {}
for i = 1, #old, 2 do before[old[i]] = old[i + 1] end
local version = tonumber(before['version']) or 0
before['version'] = nil
for _, key in ipairs({KEYS[2], KEYS[3]}) do
  local items = redis.call('HGETALL', key)
  for i = 1, #items, 2 do after[items[i]] = items[i + 1] end
end

local changed = #old == 0
for field, value in pairs(after) do changed = changed or before[field] ~= value end
for field, value in pairs(before) do changed = changed or after[field] ~= value end
if changed then
  local flat = {'version', version + 1}
  for field, value in pairs(after) do
    flat[#flat + 1] = field
    flat[#flat + 1] = value
  end
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], unpack(flat))
end
return {old, redis.call('HGETALL', KEYS[1])}
