-- Moves the shard layout (queue/shard-layout.ts) from the value a part read to another, unless it
-- changed meanwhile: a compare-and-set.
-- KEYS[1] the layout key
-- ARGV[1] the value read ('' when there was none)
-- ARGV[2] the new value ('' deletes the key)
-- ARGV[3] its time to live in ms (0: kept)
-- Returns 1 when set, 0 when the key held something else.
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] and not (v == false and ARGV[1] == '') then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
elseif ARGV[3] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
