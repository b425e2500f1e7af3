-- Heartbeat: extend the leases a worker still holds, and tell it which it lost or must cancel.
-- KEYS[1] leases zset
-- ARGV[1] job key prefix, ARGV[2] now (ms), ARGV[3] lease length (ms), then id, token pairs
-- Returns one of 'ok' | 'cancel' | 'lost' per pair.
local out = {}
local expiry = tonumber(ARGV[2]) + tonumber(ARGV[3])
for i = 4, #ARGV, 2 do
  local id, token = ARGV[i], ARGV[i + 1]
  local held = redis.call('HMGET', ARGV[1] .. id, 'token', 'cancel')
  if held[1] ~= token then
    out[#out + 1] = 'lost'
  else
    redis.call('ZADD', KEYS[1], 'XX', expiry, id)
    out[#out + 1] = held[2] and 'cancel' or 'ok'
  end
end
return out
