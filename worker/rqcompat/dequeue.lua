-- Take up to ARGV[2] job ids from the queues, in priority order, moving each into its queue's intermediate
-- list in the same atomic step (RQ 3.0 pops with LPOP when a worker listens on several queues, so a worker
-- killed between the pop and the job's start would lose the job), and read each job's hash with it (the
-- fetch RQ makes next: one round trip for all of them).
-- KEYS = queue_1, intermediate_1, queue_2, intermediate_2, ... (highest priority first)
-- ARGV[1] = the job hash's key prefix (rq:job:); the hashes are not in KEYS (RQ does not run on Cluster).
-- ARGV[2] = how many jobs at most.
-- Returns {queue_key, job_id, {field, value, ...}, queue_key, job_id, {...}, ...} (an empty field list:
-- no such hash), or nil when every queue is empty.
local wanted = tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS, 2 do
  while #out < 3 * wanted do
    local job_id = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
    if not job_id then break end
    out[#out + 1] = KEYS[i]
    out[#out + 1] = job_id
    out[#out + 1] = redis.call('HGETALL', ARGV[1] .. job_id)
  end
end
if #out == 0 then return nil end
return out
