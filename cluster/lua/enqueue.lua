-- Enqueue a batch of jobs atomically, or none of them when the queue is full.
-- Idempotent per job id: a job already known is not queued again (a client may resend a
-- script whose reply was lost with its connection).
-- KEYS[1] queue zset, KEYS[2] wake list, KEYS[3] FIFO sequence counter
-- ARGV[1] job key prefix, ARGV[2] max depth, ARGV[3] ms a job hash outlives its deadline,
-- ARGV[4] number of jobs, ARGV[5] ms the caller's `<inbox>:alive` mark lasts if unset,
-- then per job: id, priority, deadline (ms), reply-to stream, body
local count = tonumber(ARGV[4])
local depth = redis.call('ZCARD', KEYS[1])
if depth + count > tonumber(ARGV[2]) then
  return {0, depth}
end
for i = 0, count - 1 do
  local at = 6 + i * 5
  local id, priority, deadline = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local key = ARGV[1] .. id
  if redis.call('EXISTS', key) == 0 then
    -- Members sort by score (priority) and then bytewise: the zero-padded sequence keeps FIFO.
    local member = string.format('%016d', redis.call('INCR', KEYS[3])) .. ':' .. id
    redis.call('HSET', key, 'body', ARGV[at + 4], 'member', member, 'priority', priority,
      'deadline', deadline, 'reply', ARGV[at + 3], 'attempt', 0, 'state', 'queued',
      'queue', KEYS[1])
    redis.call('PEXPIREAT', key, tonumber(deadline) + tonumber(ARGV[3]))
    redis.call('ZADD', KEYS[1], priority, member)
    redis.call('LPUSH', KEYS[2], '1')
    -- Enqueueing proves its router alive (its own keep-alive may lag behind a Redis restart).
    redis.call('SET', ARGV[at + 3] .. ':alive', '1', 'NX', 'PX', ARGV[5])
  end
end
redis.call('LTRIM', KEYS[2], 0, 1023)
return {1, depth + count}
