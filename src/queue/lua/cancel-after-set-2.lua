-- Arms, re-arms or disarms one user's cancel-all-after (src/queue/cancel-after.ts), timed by
-- Redis's clock so that every gateway agrees on it.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after), a field per user:
--         "<set µs> <trigger> <owner no> <timeout ms> <fire id>", where the trigger is Redis's
--         clock in ms while armed, '-' once disarmed, 'x' once fired
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due): its trigger, the
--         end of the lease of its firing, or when a disarmed or fired one is forgotten
-- ARGV[1] user id
-- ARGV[2] the user's owner number
-- ARGV[3] timeout in ms; 0 disarms
-- ARGV[4] the id of the mass cancel it fires
-- ARGV[5] '' for a new request. Else a request accepted before a Redis restart, sent again: its
--         set time (µs), and ARGV[6] its trigger; written only if the switch Redis holds is older
-- ARGV[7] how long a disarmed or fired switch is remembered, ms (for requests sent again)
--
-- Returns {set µs, trigger, now ms, 1 written | 0 Redis holds a newer one}.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local held = redis.call('HGET', KEYS[1], ARGV[1])
local held_us = held and tonumber(string.match(held, '^%d+')) or 0
local set_us, trigger
if ARGV[5] == '' then
  set_us = t[1] .. string.format('%06d', tonumber(t[2]))
  -- Later than the one it replaces even if Redis's clock went back (a failover, a clock step).
  if tonumber(set_us) <= held_us then
    set_us = string.format('%.0f', held_us + 1)
  end
  if tonumber(ARGV[3]) > 0 then
    trigger = tostring(now_ms + tonumber(ARGV[3]))
  else
    trigger = '-'
  end
else
  if held_us >= tonumber(ARGV[5]) then
    return {ARGV[5], ARGV[6], now_ms, 0}
  end
  set_us, trigger = ARGV[5], ARGV[6]
end
redis.call('HSET', KEYS[1], ARGV[1],
  set_us .. ' ' .. trigger .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
if trigger == '-' then
  redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[7]), ARGV[1])
else
  redis.call('ZADD', KEYS[2], trigger, ARGV[1])
end
return {set_us, trigger, now_ms, 1}
