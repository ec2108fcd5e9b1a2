-- Records the shard layout (queue/shard-layout.ts) unless another part recorded a different one
-- since this one read it.
-- KEYS[1] the layout key; ARGV[1] the value read ('' when there was none), ARGV[2] the new one.
-- Returns 1 when recorded (or already so), 0 when another layout got there first.
local v = redis.call('GET', KEYS[1])
if v == ARGV[2] or v == ARGV[1] or (v == false and ARGV[1] == '') then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
