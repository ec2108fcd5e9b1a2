-- Queues the cancel of one order, if it is its owner's and not final, in one round trip.
--
-- KEYS[1] shard sequence counter   ({sN}:seq)
-- KEYS[2] shard order stream       ({sN}:orders)
-- KEYS[3] the order's status hash  ({sN}:o:<order id>)
-- ARGV[1] user id of the caller
-- ARGV[2] the caller's compact number (owner_no)
-- ARGV[3] order id
-- ARGV[4] request time, ISO 8601
--
-- Returns {0}: not in the cache (look in PostgreSQL); {4}: another user's order (answer 404);
-- {5, order JSON}: already final; {1, order JSON, seq}: cancel queued.
local h = redis.call('HMGET', KEYS[3], 'u', 's', 'q', 'j')
if not h[1] then
  return {0}
end
if h[1] ~= ARGV[1] then
  return {4}
end
if h[2] == 'FILLED' or h[2] == 'CANCELED' or h[2] == 'REJECTED' then
  return {5, h[4]}
end
local symbol = cjson.decode(h[4]).symbol
local seq = redis.call('INCR', KEYS[1])
local record = cjson.encode({
  k = 'cancel',
  order_id = ARGV[3],
  user_id = ARGV[1],
  owner_no = tonumber(ARGV[2]),
  symbol = symbol,
  target_seq = tonumber(h[3]),
  requested_at = ARGV[4],
})
redis.call('XADD', KEYS[2], '0-' .. seq, 'c', record)
return {1, h[4], seq}
