-- Settle one finished request of an API key: refund the unused part of its budget
-- reservation (only where the key has a budget) and count its usage.
--
-- KEYS[1] the key's limits hash, KEYS[2] its usage hash
-- ARGV    refund (tokens), prompt_tokens, completion_tokens
if tonumber(ARGV[1]) > 0 and redis.call('HEXISTS', KEYS[1], 'budget') == 1 then
  redis.call('HINCRBY', KEYS[1], 'budget', ARGV[1])
end
redis.call('HINCRBY', KEYS[2], 'requests', 1)
redis.call('HINCRBY', KEYS[2], 'prompt_tokens', ARGV[2])
redis.call('HINCRBY', KEYS[2], 'completion_tokens', ARGV[3])
return 1
