-- Marks a user's cancel-all-after fired once its mass cancel is queued (src/queue/cancel-after.ts),
-- unless it has changed since it was claimed (marked by another gateway, or pushed back after an
-- outage): that is left as it is.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after; see cancel-after-4.lua)
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due)
-- ARGV[1] user id
-- ARGV[2] the switch as claimed
-- ARGV[3] how long a fired switch is remembered, ms
--
-- Returns when it was marked fired (Redis's clock, ms), or 0: changed since.
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local set_us, rest = string.match(ARGV[2], '^(%d+) %d+ (.*)$')
redis.call('HSET', KEYS[1], ARGV[1], set_us .. ' x' .. now_ms .. ' ' .. rest)
redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[3]), ARGV[1])
return now_ms
