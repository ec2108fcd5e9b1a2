-- Queues a mass cancel of one user's orders on one shard, in one round trip: an entry per side it
-- names, one after the other. Never refused for the stream's length: a cancel only takes risk
-- off the book.
--
-- KEYS[1] shard sequence counter   ({sN}:seq)
-- KEYS[2] shard order stream       ({sN}:orders)
-- KEYS[3] the request's marker     ({sN}:mc:<request id>): it was queued here
-- KEYS[4] the shard layout (<prefix>:shard-layout), outside the slot
-- ARGV[1] the entry for the BUY side as JSON, or '' for none
-- ARGV[2] the entry for the SELL side as JSON, or '' for none
-- ARGV[3] the marker's TTL in seconds
-- ARGV[4] deadline, ms since the epoch: a mass cancel that only runs after the gateway answered
--         503 must write nothing (the client may have placed new orders since)
-- ARGV[5] the layout the gateway routes by: a mass cancel of one symbol goes to the shard the
--         recorded layout gives it, one of every symbol to every shard it records
--
-- Returns {1, seq}: queued, seq of its last entry; {2}: this request was queued here before (the
-- gateway queueing again what a restarted Redis may have lost), nothing written; {4, now}: past
-- the deadline, nothing written; {5, recorded layout}: the gateway routes by another layout, or
-- none is recorded (''), nothing written.
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {2}
end
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[4]) then
  return {4, now[1]}
end
local layout = redis.call('GET', KEYS[4])
if layout ~= ARGV[5] then
  return {5, layout or ''}
end
local seq = 0
for i = 1, 2 do
  if ARGV[i] ~= '' then
    seq = redis.call('INCR', KEYS[1])
    redis.call('XADD', KEYS[2], '0-' .. seq, 'c', ARGV[i])
  end
end
redis.call('SET', KEYS[3], seq, 'EX', ARGV[3])
return {1, seq}
