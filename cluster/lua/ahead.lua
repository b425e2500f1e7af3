-- How many queued jobs would start before a new job of one priority and tenant: those of
-- more urgent priorities, and those of its priority whose fair-share tag is not after the
-- tag it would get (see enqueue.lua). A probe member sorting after every member with that
-- tag is added, ranked and removed again in this one script.
-- KEYS[1] queue zset, KEYS[2] its fair-share hash
-- ARGV[1] priority, ARGV[2] tenant
local clock = redis.call('HMGET', KEYS[2], 'v:' .. ARGV[1], 't:' .. ARGV[1] .. ':' .. ARGV[2])
local tag = math.max(tonumber(clock[1] or 0), tonumber(clock[2] or 0)) + 1
local probe = string.format('%015d:~', tag)
redis.call('ZADD', KEYS[1], ARGV[1], probe)
local rank = redis.call('ZRANK', KEYS[1], probe)
redis.call('ZREM', KEYS[1], probe)
return rank
