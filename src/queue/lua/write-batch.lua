-- Writes one dispatched batch's outputs in one atomic call: every changed order's status hash, the
-- open set, new fills, recent trades, the event-stream entry `0-<last seq>` (which is what the
-- dispatcher reads W from, so it moves with the rest) and the `applied` notice. The key count
-- varies with the batch (ioredis passes it first); every key is in the shard's hash slot.
--
-- KEYS[1]                    the shard's event stream        ({sN}:events)
-- KEYS[2]                    the shard's open-order set      ({sN}:open)
-- KEYS[3]                    W, the last seq written         ({sN}:written)
-- KEYS[4]                    the shard's order stream        ({sN}:orders)
-- KEYS[5 .. 4+n]             the status hashes of the n changed orders
-- KEYS[5+n .. 4+n+f]         f fills lists (orders with new fills)
-- KEYS[5+n+f .. 4+n+f+t]     t recent-trades lists, one per symbol that traded
-- ARGV[1] n   ARGV[2] f   ARGV[3] t
-- ARGV[4] recent trades kept per symbol
-- ARGV[5] the event entry's id, 0-<last seq>
-- ARGV[6] the event batch JSON (field b)
-- ARGV[7] the applied channel
-- ARGV[8] the last seq (the applied message)
-- ARGV[9] the first seq the batch writes (W must be just below it)
-- ARGV[10] the last command's text as the dispatcher read it (field c of 0-<last seq>)
-- then, per order, 4 values: its JSON, its status, its id, and `close` (final: leaves the open
--   set), `open` (placed in this batch and still open: joins the open set) or `-`
-- then, per fills list: the count c of new fills, then c fill JSONs, oldest first
-- then, per trades list: the count c, then c trade JSONs, oldest first (the list is newest first)
--
-- Nothing here expires: a final order's status hash and fills list are kept until PostgreSQL has
-- its final state. The event entry names the orders it closes (field x, ids separated by spaces)
-- and the batch writer, once it has committed the entry, gives those keys their TTL. Expiring
-- here, at close, would lose an order from reads while PostgreSQL is down for longer than the TTL.
--
-- Returns the number of orders written; 0 when the event stream is already at the batch's last
-- seq (a re-sent call: nothing is written twice); an error STALE when the batch does not follow
-- what this Redis holds (see below).
--
-- The batch must follow what Redis holds: W just below its first seq, and its last command the
-- one in the order stream (while Redis runs, the stream only grows, so then all before it are
-- too). The dispatcher sends a batch only while neither of its connections has closed since its
-- cycle read W, so never to a Redis restarted since, which may hold other commands under those
-- sequences (one killed while its AOF write was postponed comes back without its last writes,
-- and the gateway queues the lost orders again). This is the second guard: against a
-- dispatcher out of step with Redis however that came about. STALE ends its cycle; the next
-- reads W again and the engine rolls back to it.
-- A batch already written (ioredis re-sends a command whose reply a dropped connection lost)
-- writes nothing again: its fills and trades would be pushed twice. So the event entry goes
-- first: Redis refuses an id at or below the stream's last generated one, which it keeps however
-- the stream was trimmed, and then nothing else is written. (Not a look at the stream first:
-- XINFO STREAM's reply holds its first and last entries, whole dispatched batches, which Lua
-- copied on every call, ~0.3 ms for entries of 100 kB here while every other client waited.)
-- Once the entry is in, the script runs to its end: a script that has written may go on writing
-- past maxmemory, so the batch is written whole or not at all.
local n, f, t = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local CHUNK = 200
local K = 4
local a = 11

-- Pushes argv[from .. from+count-1] onto a list in chunks (unpack is bounded by Lua's C stack).
local function push(cmd, key, from, count)
  local i = 0
  while i < count do
    local j = math.min(i + CHUNK, count)
    redis.call(cmd, key, unpack(ARGV, from + i, from + j - 1))
    i = j
  end
end

local closed, opened = {}, {}
for i = 1, n do
  local at = a + 4 * (i - 1)
  local action = ARGV[at + 3]
  if action == 'close' then
    closed[#closed + 1] = ARGV[at + 2]
  elseif action == 'open' then
    opened[#opened + 1] = ARGV[at + 2]
  end
end

-- W: kept in KEYS[3] beside the stream, whose last id is in XINFO STREAM alone (a reply that
-- copies its first and last entries, whole batches). The dispatcher sets it from the stream at
-- the start of each cycle, before its first write; this script keeps it with each batch.
local w = tonumber(redis.call('GET', KEYS[3]) or '0')
local last = tonumber(ARGV[8])
if w >= last then
  return 0
end
if w ~= tonumber(ARGV[9]) - 1 then
  return redis.error_reply('STALE the batch begins at ' .. ARGV[9] .. ' but W is ' .. w)
end
local entry = redis.call('XRANGE', KEYS[4], ARGV[5], ARGV[5])[1]
if entry == nil or entry[2][1] ~= 'c' or entry[2][2] ~= ARGV[10] then
  return redis.error_reply('STALE the order stream holds another command at ' .. ARGV[8])
end

local added
if #closed > 0 then
  added = redis.pcall('XADD', KEYS[1], ARGV[5], 'b', ARGV[6], 'x', table.concat(closed, ' '))
else
  added = redis.pcall('XADD', KEYS[1], ARGV[5], 'b', ARGV[6])
end
if type(added) == 'table' and added.err then
  if string.find(added.err, 'equal or smaller', 1, true) then
    return 0
  end
  return added
end
redis.call('SET', KEYS[3], ARGV[8])

for i = 1, n do
  redis.call('HSET', KEYS[K + i], 'j', ARGV[a], 's', ARGV[a + 1])
  a = a + 4
end
for i = 1, #closed, CHUNK do
  redis.call('SREM', KEYS[2], unpack(closed, i, math.min(i + CHUNK - 1, #closed)))
end
for i = 1, #opened, CHUNK do
  redis.call('SADD', KEYS[2], unpack(opened, i, math.min(i + CHUNK - 1, #opened)))
end

for i = 1, f do
  local key = KEYS[K + n + i]
  local count = tonumber(ARGV[a])
  push('RPUSH', key, a + 1, count)
  a = a + 1 + count
end

for i = 1, t do
  local key = KEYS[K + n + f + i]
  local count = tonumber(ARGV[a])
  push('LPUSH', key, a + 1, count)
  redis.call('LTRIM', key, 0, tonumber(ARGV[4]) - 1)
  a = a + 1 + count
end

redis.call('PUBLISH', ARGV[7], ARGV[8])
return n
