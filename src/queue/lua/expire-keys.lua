-- Gives every key the TTL: the batch writer's call for the status hashes and fills lists of the
-- orders whose final state it has committed. One command for many keys (a pipeline of EXPIREs
-- cost Redis a parse and a reply each, on the CPU it shares with the gateway). Every key is in
-- one shard's hash slot. EXPIRE on a key that is gone does nothing.
--
-- KEYS     the keys (the count varies; ioredis passes it first)
-- ARGV[1]  TTL in seconds
--
-- Returns the number of keys that exist and were given the TTL.
local n = 0
for i = 1, #KEYS do
  n = n + redis.call('EXPIRE', KEYS[i], ARGV[1])
end
return n
