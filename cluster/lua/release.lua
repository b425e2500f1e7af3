-- Give back jobs a stopping worker still holds: each returns to its old place in the queue
-- at once (not after its lease lapses), and the attempt does not count against it.
-- KEYS[1] leases zset, KEYS[2] shared queue zset (for jobs whose hash names no queue),
-- then the wake lists of the model's pools (a token in each per job given back)
-- ARGV[1] job key prefix, ARGV[2] inbox max length, then id, token pairs
-- Returns the number of jobs given back.
local released = 0
for i = 3, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local key = ARGV[1] .. id
  local job = redis.call('HMGET', key, 'token', 'member', 'priority', 'reply', 'attempt', 'cancel',
    'queue')
  if job[1] == token then
    redis.call('ZREM', KEYS[1], id)
    if job[6] then
      redis.call('DEL', key)
    else
      redis.call('HSET', key, 'state', 'queued', 'token', '', 'attempt', tonumber(job[5]) - 1)
      redis.call('ZADD', job[7] or KEYS[2], job[3], job[2])
      for w = 3, #KEYS do
        redis.call('LPUSH', KEYS[w], '1')
      end
      redis.call('XADD', job[4], 'MAXLEN', '~', ARGV[2], '*', 'rid', id, 'att', job[5], 'ev', 'requeued')
      released = released + 1
    end
  end
end
return released
