-- Queues the amend of one order (the engine's REPLACE: a new price, total quantity, or both), if it
-- is its owner's, not final, a LIMIT GTC order, and a new quantity leaves some of it open; in one
-- round trip.
--
-- KEYS[1] shard sequence counter   ({sN}:seq)
-- KEYS[2] shard order stream       ({sN}:orders)
-- KEYS[3] the order's status hash  ({sN}:o:<order id>)
-- KEYS[4] the users whose trading is halted (<prefix>:halted), outside the slot
-- ARGV[1] user id of the caller
-- ARGV[2] the order-stream record, JSON, made by the gateway but for `price_ticks`,
--         `quantity_lots` and `target_seq`, which are added here (the last from the hash's `q` as
--         it is now: a PLACE lost by Redis and queued again has a new one). Made there rather than
--         here: Lua's cjson writes numbers with 14 digits, and ticks and lots may have 16.
-- ARGV[3] the new price in ticks; '0': unchanged
-- ARGV[4] the new total quantity in lots; '0': unchanged
-- ARGV[5] the amend's place among the order's amends when it is sent again after a Redis restart;
--         '' for a new amend
-- ARGV[6] high-water mark: nothing is written while the stream holds this many entries or more
-- ARGV[7] deadline, ms since the epoch: the gateway has answered 503 by then, so a script that
--         runs later writes nothing (an amend run late could follow one sent after it)
--
-- Fields `ap` and `aq` of the hash are the places of the newest amend queued that named a price,
-- and a quantity: Redis's clock in microseconds, or one more than the order's newest place if the
-- clock is behind it. An amend sent again is queued with only the fields no later amend named.
--
-- Returns {0}: not in the cache (look in PostgreSQL); {4}: another user's order (answer 404);
-- {5, order JSON}: already final; {6, order JSON}: not a LIMIT GTC order; {7, order JSON}: the
-- quantity is not above the filled quantity; {8}: sent again, and there; {9}: sent again, and
-- every field it names superseded by a later amend; {10}: past the deadline; {11, entries}: the
-- stream is at its high-water mark; {12}: the caller's trading is halted (a new amend only: one
-- sent again was taken before); {1, order JSON, seq, place}: queued. Nothing is written but
-- with {1}.
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[7]) then
  return {10}
end
local h = redis.call('HMGET', KEYS[3], 'u', 's', 'j', 'q', 'ap', 'aq')
if not h[1] or not h[4] then
  return {0}
end
if h[1] ~= ARGV[1] then
  return {4}
end
if ARGV[5] == '' and redis.call('SISMEMBER', KEYS[4], ARGV[1]) == 1 then
  return {12}
end
if h[2] == 'FILLED' or h[2] == 'CANCELED' or h[2] == 'REJECTED' then
  return {5, h[3]}
end
local order = cjson.decode(h[3])
if order.type ~= 'LIMIT' or order.time_in_force ~= 'GTC' then
  return {6, h[3]}
end
local price, lots = ARGV[3], ARGV[4]
-- Places are below 2^53: exact as Lua numbers.
local pricePlace = tonumber(h[5] or '0')
local lotsPlace = tonumber(h[6] or '0')
local place
if ARGV[5] ~= '' then
  place = tonumber(ARGV[5])
  if (price ~= '0' and pricePlace == place) or (lots ~= '0' and lotsPlace == place) then
    return {8}
  end
  if pricePlace > place then price = '0' end
  if lotsPlace > place then lots = '0' end
  if price == '0' and lots == '0' then
    return {9}
  end
else
  place = math.max(tonumber(now[1]) * 1000000 + tonumber(now[2]), pricePlace + 1, lotsPlace + 1)
end
-- Lots below 2^53: exact as a Lua number.
if lots ~= '0' and tonumber(lots) <= order.filled_lots then
  return {7, h[3]}
end
local backlog = redis.call('XLEN', KEYS[2])
if backlog >= tonumber(ARGV[6]) then
  return {11, backlog}
end
place = string.format('%.0f', place)
local record = string.sub(ARGV[2], 1, -2) .. ',"price_ticks":' .. price .. ',"quantity_lots":' ..
  lots .. ',"target_seq":' .. h[4] .. '}'
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], '0-' .. seq, 'c', record)
if price ~= '0' then
  redis.call('HSET', KEYS[3], 'ap', place)
end
if lots ~= '0' then
  redis.call('HSET', KEYS[3], 'aq', place)
end
return {1, h[3], seq, place}
