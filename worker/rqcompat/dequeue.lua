-- Take the next job id from the first non-empty queue, in priority order, moving it into that queue's
-- intermediate list in the same atomic step (RQ 3.0 pops with LPOP when a worker listens on several
-- queues, so a worker killed between the pop and the job's start would lose the job), and read the job's
-- hash with it (the fetch RQ makes next: one round trip, not two).
-- KEYS = queue_1, intermediate_1, queue_2, intermediate_2, ... (highest priority first)
-- ARGV[1] = the job hash's key prefix (rq:job:); the hash is not in KEYS (RQ does not run on Cluster).
-- Returns {queue_key, job_id, {field, value, ...}} (an empty list: no such hash), or nil when every
-- queue is empty.
for i = 1, #KEYS, 2 do
  local job_id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
  if job_id then
    return {KEYS[i], job_id, redis.call('HGETALL', ARGV[1] .. job_id)}
  end
end
return nil
