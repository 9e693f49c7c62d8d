-- A conversation's turn in progress (keys.conversation_turn): one at a time, whoever sends.
-- KEYS[1] the turn key   ARGV[1] op: acquire | attach | release   ARGV[2] the caller's holder value
-- ARGV[3] (acquire, attach) time to live, ms   ARGV[4] (acquire) result key prefix; (attach) the new value
-- ARGV[5] (acquire, optional) RQ's job hash prefix: a job whose hash is gone and that has no record was
-- lost (deleted, expired) and holds the turn no longer.
-- A holder is "pending:<token>" while its message is being enqueued, then "job:<id>". A job's turn is over
-- once its result record exists (the worker writes the conversation's turns before the record).
local op = ARGV[1]
local holder = redis.call('GET', KEYS[1])
if op == 'acquire' then
  if holder and holder ~= ARGV[2] then
    local job = string.match(holder, '^job:(.+)$')
    if not job then
      return holder
    end
    local done = redis.call('EXISTS', ARGV[4] .. job) == 1
    local lost = ARGV[5] and ARGV[5] ~= '' and redis.call('EXISTS', ARGV[5] .. job) == 0
    if not (done or lost) then
      return holder
    end
  end
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return false
elseif op == 'attach' then
  if holder ~= ARGV[2] then
    return 0
  end
  redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
  return 1
elseif op == 'release' then
  if holder == ARGV[2] then
    redis.call('DEL', KEYS[1])
    return 1
  end
  return 0
end
return redis.error_reply('unknown op ' .. tostring(op))
