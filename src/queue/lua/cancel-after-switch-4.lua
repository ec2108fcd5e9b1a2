-- One user's cancel-all-after (src/queue/cancel-after.ts), timed by Redis's clock so that every
-- gateway agrees on it: read, armed or disarmed, or written again after a Redis restart.
--
-- A switch has run out when its time has passed, unless an outage came first: after one (no
-- sweep by any gateway for ARGV[8] ms, or a Redis restart), every switch that had not run out by
-- the last sweep before it counts down again from its end (cancel-after-due-4.lua). An arm or
-- disarm taken during an outage ends it.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after), a field per user:
--         "<set µs> <state> <owner no> <timeout ms> <fire id>", where the state is Redis's clock
--         in ms when it runs out while armed, '-' once disarmed, 'x<ms>' once fired (at <ms>)
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due): when it runs out,
--         the end of the lease of its firing, or when a disarmed or fired one is forgotten
-- KEYS[3] the last sweep (<prefix>:cancel-after:swept): "<Redis run_id> <ms>"
-- KEYS[4] the outages of the last day, oldest first (<prefix>:cancel-after:outages): "<last sweep
--         before it, ms> <its end, ms>" each, one after the other
-- ARGV[1] user id
-- ARGV[2] 'get'; 'set': ARGV[3] the owner number, ARGV[4] the timeout in ms (0 disarms), ARGV[5]
--         the id of the mass cancel it fires; 'resend': the same, and ARGV[6] the set time (µs)
--         and ARGV[7] the state of a switch set before a Redis restart
-- ARGV[8] the longest gap between sweeps that is not an outage, ms
-- ARGV[9] how long a disarmed or fired switch is remembered, ms
--
-- Returns {1, set µs, state, now ms}: 'set', or 'resend' written; {0}: a 'resend' of a switch that
-- Redis holds one set as late or later than, or older than a disarmed one is remembered: nothing
-- written; {2, switch}: a 'set' while the switch held has run out and not fired yet: nothing
-- written (its running out is final: fire it, mark it fired, then set again); {3, switch or '',
-- when it runs out or '', now ms}: 'get'.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local held = redis.call('HGET', KEYS[1], ARGV[1])
local held_us = held and tonumber(string.match(held, '^%d+')) or 0

-- The outages of the last day, oldest first ({last sweep before it, its end} each), with one the
-- sweeps have not seen the end of yet last: it ends now (`ends_now` is then Redis's run_id).
local outages = {}
for l, e in string.gmatch(redis.call('GET', KEYS[4]) or '', '(%d+) (%d+)') do
  outages[#outages + 1] = {tonumber(l), tonumber(e)}
end
local ends_now
do
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
  local swept = redis.call('GET', KEYS[3])
  local swept_run, swept_ms
  if swept then
    swept_run, swept_ms = string.match(swept, '^(%x+) (%d+)$')
  end
  if swept_run ~= run or now_ms - tonumber(swept_ms) > tonumber(ARGV[8]) then
    outages[#outages + 1] = {tonumber(swept_ms) or 0, now_ms}
    ends_now = run
  end
end

-- When the switch held runs out, or nil when it is not armed: a switch that had not run out by
-- the last sweep before an outage counts down again from its end, outage after outage.
local function runs_out()
  local at, timeout = string.match(held or '', '^%d+ (%d+) %d+ (%d+) ')
  if not at then
    return nil
  end
  at = tonumber(at)
  for _, o in ipairs(outages) do
    if at > o[1] then
      at = math.max(at, o[2] + tonumber(timeout))
    end
  end
  return at
end

if ARGV[2] == 'get' then
  local at = runs_out()
  return {3, held or '', at and string.format('%.0f', at) or '', now_ms}
end

-- An arm taken ends the outage under way, if any: the system is taking arms again.
if ends_now then
  local kept = {}
  for _, o in ipairs(outages) do
    if o[2] > now_ms - 86400000 then
      kept[#kept + 1] = string.format('%.0f %.0f', o[1], o[2])
    end
  end
  redis.call('SET', KEYS[4], table.concat(kept, ' '))
  redis.call('SET', KEYS[3], ends_now .. ' ' .. now_ms)
end
local set_us, state
if ARGV[2] == 'set' then
  local at = runs_out()
  if at and at <= now_ms then
    return {2, held}
  end
  -- Later than the one it replaces even if Redis's clock went back (a failover, a clock step).
  set_us = string.format('%.0f', math.max(now_us, held_us + 1))
  if tonumber(ARGV[4]) > 0 then
    state = string.format('%.0f', now_ms + tonumber(ARGV[4]))
  else
    state = '-'
  end
else
  local sent_us = tonumber(ARGV[6])
  if held_us >= sent_us or now_us - sent_us > tonumber(ARGV[9]) * 1000 then
    return {0}
  end
  set_us, state = ARGV[6], ARGV[7]
  -- Redis restarted since it was taken, and could take no arm meanwhile: an armed switch counts
  -- down again from now, as after any outage.
  if string.match(state, '^%d+$') then
    state = string.format('%.0f', math.max(tonumber(state), now_ms + tonumber(ARGV[4])))
  end
end
redis.call('HSET', KEYS[1], ARGV[1],
  set_us .. ' ' .. state .. ' ' .. ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
if string.match(state, '^%d+$') then
  redis.call('ZADD', KEYS[2], state, ARGV[1])
else
  redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[9]), ARGV[1])
end
return {1, set_us, state, now_ms}
