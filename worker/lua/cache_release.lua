-- cache_release: the leading job is done. With an answer, store it (the jobs waiting find it on their next
-- look); then give up the lease if it is still this job's (a lease that ran out may be another job's now).
-- KEYS: entry, lead.  ARGV: token, [answer, ttl_s].
if ARGV[2] then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
