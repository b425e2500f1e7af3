-- Admit one request of an API key: two token buckets (requests and tokens per
-- minute) and the key's token budget, checked and taken together, atomically.
--
-- KEYS[1] the key's limits hash (raylane:keylimit:<name>): fields rq, rq_ts, tk, tk_ts
--         (bucket levels and when they were last refilled, ms) and budget (tokens left;
--         absent = no budget)
-- ARGV    now_ms, rpm, tpm, cost (tokens reserved)
-- Returns {0, 0} admitted; {1, ms} a bucket is short, enough refills in `ms`;
--         {2, left} the budget cannot cover `cost` (nothing was taken).
-- A limit of 0 means none. A bucket holds one minute's worth and starts full.
local now = tonumber(ARGV[1])
local rpm = tonumber(ARGV[2])
local tpm = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

-- A bucket's level now, and the time to store with it: never earlier than the stored one,
-- since routers' calls may reach Redis in another order than their clocks read (a stamp
-- moved back would count the same refill twice).
local function level(field, cap)
  local raw = redis.call('HMGET', KEYS[1], field, field .. '_ts')
  if not raw[1] then return cap, now end
  local stamp = tonumber(raw[2])
  local elapsed = math.max(0, now - stamp)
  return math.min(cap, tonumber(raw[1]) + elapsed * cap / 60000), math.max(now, stamp)
end

local function wait(have, need, cap)
  return math.ceil((need - have) * 60000 / cap)
end

local rq, tk, rq_ts, tk_ts = 0, 0, now, now
local short = 0
if rpm > 0 then
  rq, rq_ts = level('rq', rpm)
  if rq < 1 then short = math.max(short, wait(rq, 1, rpm)) end
end
if tpm > 0 then
  -- a request asking more than a whole minute's tokens waits for a full bucket
  cost = math.min(cost, tpm)
  tk, tk_ts = level('tk', tpm)
  if tk < cost then short = math.max(short, wait(tk, cost, tpm)) end
end
if short > 0 then return {1, short} end

local budget = redis.call('HGET', KEYS[1], 'budget')
if budget and tonumber(budget) < tonumber(ARGV[4]) then
  return {2, tonumber(budget)}
end
if budget then redis.call('HINCRBY', KEYS[1], 'budget', -tonumber(ARGV[4])) end
-- levels are stored as strings: floats survive without Lua's integer conversion
if rpm > 0 then
  redis.call('HSET', KEYS[1], 'rq', tostring(rq - 1), 'rq_ts', tostring(rq_ts))
end
if tpm > 0 then
  redis.call('HSET', KEYS[1], 'tk', tostring(tk - cost), 'tk_ts', tostring(tk_ts))
end
return {0, 0}
