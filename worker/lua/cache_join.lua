-- cache_join: a job that may be served from the response cache asks once, atomically: is the answer stored
-- ('hit', answer), or does it make the paid call itself ('lead': it now holds the lease), or is an identical
-- request's call in flight ('wait', ms left on that job's lease).
-- KEYS: entry, lead.  ARGV: token (this job's), lease_ms.
local found = redis.call('GET', KEYS[1])
if found then return {'hit', found} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'lead', ''} end
return {'wait', tostring(redis.call('PTTL', KEYS[2]))}
