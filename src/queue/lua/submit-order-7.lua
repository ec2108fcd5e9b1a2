-- Accepts one order in one round trip: idempotency check, trading halt check, back-pressure check,
-- sequence, journal append, status cache, the user's recent-orders index. All keys but the
-- idempotency key, the layout and the halted users are in the shard's hash slot.
--
-- KEYS[1] shard sequence counter               ({sN}:seq)
-- KEYS[2] shard order stream                   ({sN}:orders)
-- KEYS[3] the order's status hash              ({sN}:o:<order id>)
-- KEYS[4] the idempotency key                  ({s0}:idem:<user>:<client_order_id>: shard 0's for
--                                               every shard, a client_order_id being the user's;
--                                               not touched when there is no client_order_id)
-- KEYS[5] the user's recent-orders sorted set  ({sN}:recent:<user>)
-- KEYS[6] the shard layout (<prefix>:shard-layout, queue/shard-layout.ts), outside the slot too
-- KEYS[7] the users whose trading is halted (<prefix>:halted), outside the slot too
-- ARGV[1] the order as JSON (its seq is the stream id's, not in the JSON)
-- ARGV[2] user id
-- ARGV[3] order id
-- ARGV[4] high-water mark: answer OVERLOADED when the stream holds this many entries or more
-- ARGV[5] idempotency TTL in seconds, or 0 when the order has no client_order_id
-- ARGV[6] creation time in ms (score in the recent set)
-- ARGV[7] how many recent orders to keep per user
-- ARGV[8] deadline, ms since the epoch: the gateway has answered 503 by then, so a script that
--         only runs later (Redis was frozen, the request sat in a socket) must write nothing
-- ARGV[9] the layout the gateway routes by: an order is queued only on the shard the recorded
--         layout gives its symbol, so a gateway left with another SHARDS (or one running while the
--         layout changes) cannot split a symbol's book across two engines
-- ARGV[10] '1': a new order, refused while its user's trading is halted; '0': one sent again after
--          a Redis restart, taken before any halt (it was accepted before): queued, and if its user
--          is halted now, a cancel of it right behind it (the halt's mass cancel, sent again by
--          another gateway, may be ahead of it now)
-- ARGV[11] with '0': the time, ISO 8601, of that cancel; '' with '1'
--
-- Returns {1, seq}: accepted; {1, seq, 1}: this very order was accepted before, nothing written
-- (a client library that re-sends a script whose reply was lost, or the gateway queueing again
-- what a restarted Redis may have lost, must not queue the order twice); {2, order id}:
-- client_order_id already used (by that order);
-- {3, entries}: the stream is at its high-water mark, nothing written; {4, now}: past the
-- deadline, nothing written; {5, recorded layout}: the gateway routes by another layout, or none
-- is recorded ('': a Redis that came back empty; the gateway puts it back from PostgreSQL), nothing
-- written; {6}: the user's trading is halted, nothing written.
local accepted = redis.call('HGET', KEYS[3], 'q')
if accepted then
  return {1, tonumber(accepted), 1}
end
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[8]) then
  return {4, now[1]}
end
local layout = redis.call('GET', KEYS[6])
if layout ~= ARGV[9] then
  return {5, layout or ''}
end
if ARGV[5] ~= '0' then
  local existing = redis.call('GET', KEYS[4])
  if existing then
    return {2, existing}
  end
end
if ARGV[10] == '1' and redis.call('SISMEMBER', KEYS[7], ARGV[2]) == 1 then
  return {6}
end
local backlog = redis.call('XLEN', KEYS[2])
if backlog >= tonumber(ARGV[4]) then
  return {3, backlog}
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], '0-' .. seq, 'c', '{"k":"place","order":' .. ARGV[1] .. '}')
redis.call('HSET', KEYS[3], 'j', ARGV[1], 's', 'PENDING', 'u', ARGV[2], 'q', seq)
if ARGV[5] ~= '0' then
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ARGV[5])
end
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[3])
redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -(tonumber(ARGV[7]) + 1))
if ARGV[10] == '0' and redis.call('SISMEMBER', KEYS[7], ARGV[2]) == 1 then
  local order = cjson.decode(ARGV[1])
  local cancel = redis.call('INCR', KEYS[1])
  redis.call('XADD', KEYS[2], '0-' .. cancel, 'c', cjson.encode({
    k = 'cancel',
    order_id = ARGV[3],
    user_id = ARGV[2],
    owner_no = order.owner_no,
    symbol = order.symbol,
    target_seq = seq,
    requested_at = ARGV[11],
  }))
end
return {1, seq}
