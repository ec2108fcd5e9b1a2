-- Queues a forget (src/queue/records.ts) for each symbol a change of the shard layout moves onto
-- this shard, in the order stream as any command, so that its engine drops what it still holds of
-- them from an earlier stay (queue/shard-layout.ts) before their first order under the new layout.
-- Only while the change's marker is still the key: no gateway accepts an order meanwhile.
-- KEYS[1] shard sequence counter   ({sN}:seq)
-- KEYS[2] shard order stream       ({sN}:orders)
-- KEYS[3] the shard layout key (<prefix>:shard-layout), outside the slot
-- ARGV[1] the change's marker
-- ARGV[2..] each forget record as JSON
-- Returns the number of records queued: all of them, or 0 when the marker is gone.
if redis.call('GET', KEYS[3]) ~= ARGV[1] then
  return 0
end
for i = 2, #ARGV do
  local seq = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], '0-' .. seq, 'c', ARGV[i])
end
return #ARGV - 1
