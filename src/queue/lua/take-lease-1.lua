-- The dispatcher lease of a shard (src/dispatcher/lease.ts): taken, or kept, by the dispatcher
-- whose token is ARGV[1] when the key is free or already its own, for ARGV[2] ms from now.
-- Returns the holder's token afterwards: ARGV[1] if taken or kept, another's if it is held.
-- KEYS[1] the lease key.
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder
