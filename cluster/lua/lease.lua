-- Lease the most urgent job a pool may take, skipping dead ones: past their deadline (the
-- caller is told), or waited on by a router replica that is gone (its `<inbox>:alive` key
-- expired: nobody would receive the answer). A pool takes from its own queue (jobs the
-- router sent it) and, unless it only takes such jobs, from the model's shared queue; the
-- more urgent head wins, its own on a tie. Leasing a job moves its queue's virtual time at
-- that priority up to the job's fair-share tag (see enqueue.lua).
-- KEYS[1] shared queue zset, KEYS[2] leases zset, KEYS[3] the pool's own queue zset,
-- KEYS[4] the shared queue's fair-share hash, KEYS[5] the own queue's
-- ARGV[1] job key prefix, ARGV[2] now (ms), ARGV[3] lease length (ms), ARGV[4] worker id,
-- ARGV[5] lowest priority value taken ('-inf'), ARGV[6] highest ('+inf'), ARGV[7] inbox max length,
-- ARGV[8] '1' to drop jobs of gone routers, '0' when the caller cannot trust the alive keys
-- (it just lived through a Redis outage, during which no router could refresh its key),
-- ARGV[9] '1' when the pool takes from the shared queue
-- Returns {id, body, token, attempt}, or false when nothing is leasable.
local now = tonumber(ARGV[2])

local function head(queue)
  return redis.call('ZRANGEBYSCORE', queue, ARGV[5], ARGV[6], 'LIMIT', 0, 1, 'WITHSCORES')
end

for _ = 1, 64 do
  local own = head(KEYS[3])
  local shared = {}
  if ARGV[9] == '1' then
    shared = head(KEYS[1])
  end
  local queue, fair, member, priority
  if #own > 0 and (#shared == 0 or tonumber(own[2]) <= tonumber(shared[2])) then
    queue, fair, member, priority = KEYS[3], KEYS[5], own[1], own[2]
  elseif #shared > 0 then
    queue, fair, member, priority = KEYS[1], KEYS[4], shared[1], shared[2]
  else
    return false
  end
  redis.call('ZREM', queue, member)
  local tag, id = string.match(member, '^(%d+):%d+:(.+)$')
  local clock = 'v:' .. priority
  if tonumber(tag) > tonumber(redis.call('HGET', fair, clock) or 0) then
    redis.call('HSET', fair, clock, tag)
  end
  local key = ARGV[1] .. id
  local job = redis.call('HMGET', key, 'body', 'deadline', 'reply', 'attempt')
  if job[1] then
    if tonumber(job[2]) <= now then
      -- Past its deadline while queued: never started, its caller is told.
      redis.call('XADD', job[3], 'MAXLEN', '~', ARGV[7], '*', 'rid', id, 'att', job[4], 'ev', 'timeout')
      redis.call('DEL', key)
    elseif ARGV[8] == '1' and redis.call('EXISTS', job[3] .. ':alive') == 0 then
      redis.call('DEL', key)
    else
      local attempt = tonumber(job[4]) + 1
      local token = ARGV[4] .. '/' .. attempt
      redis.call('HSET', key, 'attempt', attempt, 'token', token, 'state', 'leased', 'worker', ARGV[4])
      redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), id)
      redis.call('XADD', job[3], 'MAXLEN', '~', ARGV[7], '*', 'rid', id, 'att', attempt, 'ev', 'started')
      return {id, job[1], token, attempt}
    end
  end
end
return false
