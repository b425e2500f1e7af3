-- Requeue jobs whose lease lapsed (worker killed, paused or cut off).
-- KEYS[1] leases zset, KEYS[2] shared queue zset (for jobs whose hash names no queue),
-- KEYS[3] dead-letter zset, then the wake lists of the model's pools (a token in each per
-- job requeued)
-- ARGV[1] job key prefix, ARGV[2] now (ms), ARGV[3] max attempts, ARGV[4] inbox max length,
-- ARGV[5] ms a dead-lettered job hash is kept
-- Returns the number of lapsed leases handled.
local now = tonumber(ARGV[2])
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 128)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', KEYS[1], id)
  local key = ARGV[1] .. id
  local job = redis.call('HMGET', key, 'member', 'priority', 'deadline', 'reply', 'attempt', 'cancel',
    'queue')
  if job[1] then
    if job[6] then
      redis.call('DEL', key)  -- cancelled: nobody waits for it
    elseif tonumber(job[3]) <= now then
      redis.call('XADD', job[4], 'MAXLEN', '~', ARGV[4], '*', 'rid', id, 'att', job[5], 'ev', 'timeout')
      redis.call('DEL', key)
    elseif tonumber(job[5]) >= tonumber(ARGV[3]) then
      redis.call('HSET', key, 'state', 'dead', 'token', '')
      redis.call('PEXPIRE', key, ARGV[5])
      redis.call('ZADD', KEYS[3], now, id)
      redis.call('XADD', job[4], 'MAXLEN', '~', ARGV[4], '*', 'rid', id, 'att', job[5], 'ev', 'dead')
    else
      -- Back to its old place: its queue, same priority, same sequence number.
      redis.call('HSET', key, 'state', 'queued', 'token', '')
      redis.call('ZADD', job[7] or KEYS[2], job[2], job[1])
      for w = 4, #KEYS do
        redis.call('LPUSH', KEYS[w], '1')
      end
      redis.call('XADD', job[4], 'MAXLEN', '~', ARGV[4], '*', 'rid', id, 'att', job[5], 'ev', 'requeued')
    end
  end
end
return #lapsed
