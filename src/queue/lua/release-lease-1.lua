-- Gives a shard's lease (a dispatcher's or a writer's, src/queue/lease.ts) up, if ARGV[1] holds
-- it; a lease taken over by another process meanwhile stays that one's. Returns 1 if given up.
-- KEYS[1] the lease key.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
