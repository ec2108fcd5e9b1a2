-- Claims the cancel-all-after switches whose time has come (src/queue/cancel-after.ts): each is
-- leased to the caller, due again at the lease's end unless reported fired by then (so that a
-- gateway that dies while firing one leaves it to another). Disarmed and fired switches whose
-- time to be forgotten has come are forgotten.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after; see cancel-after-set-2.lua)
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due)
-- ARGV[1] the lease, ms
-- ARGV[2] at most this many
--
-- Returns {now ms, user id, switch, user id, switch, ...}.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {now_ms}
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
for _, user in ipairs(due) do
  local held = redis.call('HGET', KEYS[1], user)
  if held and string.match(held, '^%d+ %d+ ') then
    redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[1]), user)
    out[#out + 1] = user
    out[#out + 1] = held
  else
    redis.call('ZREM', KEYS[2], user)
    if held then
      redis.call('HDEL', KEYS[1], user)
    end
  end
end
return out
