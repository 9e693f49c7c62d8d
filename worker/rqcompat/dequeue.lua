-- Take the next job id from the first non-empty queue, in priority order, moving it into that queue's
-- intermediate list in the same atomic step (RQ 3.0 pops with LPOP when a worker listens on several
-- queues, so a worker killed between the pop and the job's start would lose the job).
-- KEYS = queue_1, intermediate_1, queue_2, intermediate_2, ... (highest priority first)
-- Returns {queue_key, job_id}, or nil when every queue is empty.
for i = 1, #KEYS, 2 do
  local job_id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
  if job_id then
    return {KEYS[i], job_id}
  end
end
return nil
