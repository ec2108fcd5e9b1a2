-- Sets W's key from the event stream and returns W, in one step: the dispatcher's start of a
-- cycle. As two steps (read the stream's last id, then set the key) another dispatcher's batch
-- written in between (two running for one shard, or one superseded whose write was in flight)
-- would have its W taken back, and the batch script, trusting the key, would let the next cycle
-- write that batch's outcomes a second time. Read and set together, the key never moves back, and
-- a batch that does not follow it is refused (STALE).
--
-- KEYS[1] the shard's event stream   ({sN}:events)
-- KEYS[2] W                          ({sN}:written)
--
-- Returns W: the sequence of the event stream's last generated id (0-<seq>), 0 for no stream.
local info = redis.pcall('XINFO', 'STREAM', KEYS[1])
local w = 0
if info.err then
  if not string.find(info.err, 'no such key', 1, true) then
    return info
  end
else
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      w = tonumber(string.match(info[i + 1], '-(%d+)$'))
    end
  end
end
redis.call('SET', KEYS[2], w)
return w
