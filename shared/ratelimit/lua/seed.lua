-- seed: write the catalog's limits only if the model has none, so runtime changes survive restarts.
-- KEYS: limits.  ARGV: field, value, ...  Reply: 1 if written, 0 if limits were already there.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
