-- Send one event of a leased job to its caller's inbox, fenced by the lease token.
-- KEYS[1] leases zset, KEYS[2] finished-jobs counter of the current second, KEYS[3] ms
-- of work of the jobs finished in the current second, KEYS[4] and KEYS[5] the same two
-- counters of the sender's pool
-- ARGV[1] job key prefix, ARGV[2] job id, ARGV[3] lease token, ARGV[4] event, ARGV[5] data,
-- ARGV[6] '1' when the event ends the job, ARGV[7] inbox max length, ARGV[8] the event's
-- sequence number within this attempt (the router drops repeats of a resent event),
-- ARGV[9] milliseconds the job took (with a final event)
-- Returns 0 when the token is stale (the event was dropped), 2 when the job is being
-- cancelled, 1 otherwise.
local key = ARGV[1] .. ARGV[2]
local held = redis.call('HMGET', key, 'token', 'cancel', 'reply', 'attempt')
if held[1] ~= ARGV[3] then
  return 0
end
redis.call('XADD', held[3], 'MAXLEN', '~', ARGV[7], '*',
  'rid', ARGV[2], 'att', held[4], 'seq', ARGV[8], 'ev', ARGV[4], 'data', ARGV[5])
if ARGV[6] == '1' then
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[1], ARGV[2])
  for i = 2, 4, 2 do
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], 120)
    -- Integer milliseconds: INCRBYFLOAT in a script corrupts the heap of some 6.2 builds.
    redis.call('INCRBY', KEYS[i + 1], ARGV[9])
    redis.call('EXPIRE', KEYS[i + 1], 120)
  end
  return 1
end
if held[2] then
  return 2
end
return 1
