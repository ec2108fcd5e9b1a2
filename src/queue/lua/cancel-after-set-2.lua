-- Arms, re-arms or disarms one user's cancel-all-after (src/queue/cancel-after.ts), timed by
-- Redis's clock so that every gateway agrees on it.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after), a field per user:
--         "<set µs> <state> <owner no> <timeout ms> <fire id>", where the state is Redis's clock
--         in ms when it runs out while armed, '-' once disarmed, 'x<ms>' once fired (at <ms>)
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due): when it runs out,
--         the end of the lease of its firing, or when a disarmed or fired one is forgotten
-- ARGV[1] user id
-- ARGV[2] the user's owner number
-- ARGV[3] timeout in ms; 0 disarms
-- ARGV[4] the id of the mass cancel it fires
-- ARGV[5] '' for a new request. Else a request accepted before a Redis restart, sent again: its
--         set time (µs), and ARGV[6] its state
-- ARGV[7] how long a disarmed or fired switch is remembered, ms
--
-- Returns {1, set µs, state, now ms}: written. {0}: a request sent again that Redis holds a
-- switch set as late or later than, or older than a disarmed one is remembered: nothing written.
-- {2, switch}: a new request while the switch Redis holds has run out and not fired yet: nothing
-- written (its expiry is final: fire it, mark it fired, then send this again).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local held = redis.call('HGET', KEYS[1], ARGV[1])
local held_us = held and tonumber(string.match(held, '^%d+')) or 0
local set_us, state
if ARGV[5] == '' then
  local runs_out = held and string.match(held, '^%d+ (%d+) ')
  if runs_out and tonumber(runs_out) <= now_ms then
    return {2, held}
  end
  -- Later than the one it replaces even if Redis's clock went back (a failover, a clock step).
  set_us = string.format('%.0f', math.max(now_us, held_us + 1))
  if tonumber(ARGV[3]) > 0 then
    state = string.format('%.0f', now_ms + tonumber(ARGV[3]))
  else
    state = '-'
  end
else
  local sent_us = tonumber(ARGV[5])
  if held_us >= sent_us or now_us - sent_us > tonumber(ARGV[7]) * 1000 then
    return {0}
  end
  set_us, state = ARGV[5], ARGV[6]
  -- Redis restarted since it was taken, and could take no arm meanwhile: an armed switch counts
  -- down again from now, as after any outage (cancel-after-due-3.lua).
  if string.match(state, '^%d+$') then
    state = string.format('%.0f', math.max(tonumber(state), now_ms + tonumber(ARGV[3])))
  end
end
redis.call('HSET', KEYS[1], ARGV[1],
  set_us .. ' ' .. state .. ' ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
if string.match(state, '^%d+$') then
  redis.call('ZADD', KEYS[2], state, ARGV[1])
else
  redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[7]), ARGV[1])
end
return {1, set_us, state, now_ms}
