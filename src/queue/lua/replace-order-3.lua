-- Queues the amend of one order (the engine's REPLACE: a new price, total quantity, or both), if it
-- is its owner's, not final, a LIMIT GTC order, and a new quantity leaves some of it open; in one
-- round trip.
--
-- KEYS[1] shard sequence counter   ({sN}:seq)
-- KEYS[2] shard order stream       ({sN}:orders)
-- KEYS[3] the order's status hash  ({sN}:o:<order id>)
-- ARGV[1] user id of the caller
-- ARGV[2] the order-stream record, JSON, made by the gateway but for its `target_seq`, which is
--         added here from the hash's `q` as it is now (a PLACE lost by Redis and queued again has
--         a new one). Made there rather than here: Lua's cjson writes numbers with 14 digits, and
--         ticks and lots may have 16.
-- ARGV[3] the new total quantity in lots; 0: unchanged
-- ARGV[4] the amend's place among the order's amends (see field `a`) when it is sent again after
--         a Redis restart; '' for a new amend
--
-- Field `a` of the hash is the place of the newest amend queued: Redis's clock in microseconds,
-- or one more than the amend before if the clock is behind it. An amend sent again is queued only
-- if `a` is below its own place (Redis lost it, and no later amend is there to supersede it).
--
-- Returns {0}: not in the cache (look in PostgreSQL); {4}: another user's order (answer 404);
-- {5, order JSON}: already final; {6, order JSON}: not a LIMIT GTC order; {7, order JSON}: the
-- quantity is not above the filled quantity; {8}: sent again, and already there or superseded;
-- {1, order JSON, seq, place}: amend queued.
local h = redis.call('HMGET', KEYS[3], 'u', 's', 'j', 'q', 'a')
if not h[1] then
  return {0}
end
if h[1] ~= ARGV[1] then
  return {4}
end
if h[2] == 'FILLED' or h[2] == 'CANCELED' or h[2] == 'REJECTED' then
  return {5, h[3]}
end
local order = cjson.decode(h[3])
if order.type ~= 'LIMIT' or order.time_in_force ~= 'GTC' then
  return {6, h[3]}
end
-- Below 2^53: exact as Lua numbers.
local lots = tonumber(ARGV[3])
if lots > 0 and lots <= order.filled_lots then
  return {7, h[3]}
end
local newest = tonumber(h[5] or '0')
local place
if ARGV[4] ~= '' then
  place = tonumber(ARGV[4])
  if newest >= place then
    return {8}
  end
else
  local t = redis.call('TIME')
  place = math.max(tonumber(t[1]) * 1000000 + tonumber(t[2]), newest + 1)
end
place = string.format('%.0f', place)
local seq = redis.call('INCR', KEYS[1])
local record = string.sub(ARGV[2], 1, -2) .. ',"target_seq":' .. h[4] .. '}'
redis.call('XADD', KEYS[2], '0-' .. seq, 'c', record)
redis.call('HSET', KEYS[3], 'a', place)
return {1, h[3], seq, place}
