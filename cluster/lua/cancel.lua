-- Cancel a job: a queued one is removed, a leased one is flagged for its worker.
-- ARGV[1] job key prefix, ARGV[2] job id
-- (The queue's key is read from the job's hash, so callers need only the id.)
-- Returns 'removed' | 'flagged' | 'gone'.
local key = ARGV[1] .. ARGV[2]
local job = redis.call('HMGET', key, 'state', 'member', 'queue')
if not job[1] or job[1] == 'dead' then
  return 'gone'
end
if job[1] == 'queued' then
  redis.call('ZREM', job[3], job[2])
  redis.call('DEL', key)
  return 'removed'
end
redis.call('HSET', key, 'cancel', '1')
return 'flagged'
