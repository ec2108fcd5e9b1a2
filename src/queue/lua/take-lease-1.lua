-- A shard's lease, a dispatcher's or a writer's (src/queue/lease.ts): taken, or kept, for ARGV[2]
-- ms from now by the process whose value is ARGV[1], when the key is free, already its own, or held
-- under its identity (ARGV[3], the value's `<id>|` prefix; empty without one) by the dead process
-- it replaces. Returns {1, the value before ('' if free)} when taken or kept, {0, the holder's
-- value} when another holds it.
-- KEYS[1] the lease key.
local holder = redis.call('GET', KEYS[1])
local ours = holder == ARGV[1]
  or (holder and ARGV[3] ~= '' and string.sub(holder, 1, #ARGV[3]) == ARGV[3])
if holder == false or ours then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return { 1, holder or '' }
end
return { 0, holder }
