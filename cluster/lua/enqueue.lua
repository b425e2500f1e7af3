-- Enqueue a batch of jobs atomically, or none of them when the queue is full.
-- Idempotent per job id: a job already known is not queued again (a client may resend a
-- script whose reply was lost with its connection).
-- Within a priority, tenants (API keys, or callers' `user`) share the queue fairly, by
-- start-time fair queuing: a job's tag is one more than the later of the priority's virtual
-- time (the tag of the job leased last) and its tenant's previous tag, and jobs are served in
-- tag order. A tenant with many queued jobs holds tags far ahead; a newcomer's job gets the
-- next tag after the one in service, so it waits for about one job of each busy tenant, not
-- for the whole backlog. One tenant alone gets plain FIFO.
-- KEYS[1] queue zset, KEYS[2] FIFO sequence counter, KEYS[3] fair-share hash, then the wake
-- lists of the pools that may take the jobs (one token per job in each)
-- ARGV[1] job key prefix, ARGV[2] max depth, ARGV[3] ms a job hash outlives its deadline,
-- ARGV[4] number of jobs, ARGV[5] ms the caller's `<inbox>:alive` mark lasts if unset,
-- ARGV[6] ms the fair-share hash outlives its last use,
-- then per job: id, priority, deadline (ms), reply-to stream, body, tenant
local count = tonumber(ARGV[4])
local depth = redis.call('ZCARD', KEYS[1])
if depth + count > tonumber(ARGV[2]) then
  return {0, depth}
end
for i = 0, count - 1 do
  local at = 7 + i * 6
  local id, priority, deadline = ARGV[at], ARGV[at + 1], ARGV[at + 2]
  local key = ARGV[1] .. id
  if redis.call('EXISTS', key) == 0 then
    local last = 't:' .. priority .. ':' .. ARGV[at + 5]
    local clock = redis.call('HMGET', KEYS[3], 'v:' .. priority, last)
    local tag = math.max(tonumber(clock[1] or 0), tonumber(clock[2] or 0)) + 1
    redis.call('HSET', KEYS[3], last, tag)
    -- Members sort by score (priority) and then bytewise: the zero-padded tag, then the
    -- zero-padded sequence number (FIFO among equal tags), then the id.
    local member = string.format('%015d:%016d:', tag, redis.call('INCR', KEYS[2])) .. id
    redis.call('HSET', key, 'body', ARGV[at + 4], 'member', member, 'priority', priority,
      'deadline', deadline, 'reply', ARGV[at + 3], 'attempt', 0, 'state', 'queued',
      'queue', KEYS[1])
    redis.call('PEXPIREAT', key, tonumber(deadline) + tonumber(ARGV[3]))
    redis.call('ZADD', KEYS[1], priority, member)
    for w = 4, #KEYS do
      redis.call('LPUSH', KEYS[w], '1')
    end
    -- Enqueueing proves its router alive (its own keep-alive may lag behind a Redis restart).
    redis.call('SET', ARGV[at + 3] .. ':alive', '1', 'NX', 'PX', ARGV[5])
  end
end
redis.call('PEXPIRE', KEYS[3], ARGV[6])
for w = 4, #KEYS do
  redis.call('LTRIM', KEYS[w], 0, 1023)
end
return {1, depth + count}
