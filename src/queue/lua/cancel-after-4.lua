-- The cancel-all-after switches (src/queue/cancel-after.ts), timed by Redis's clock so that every
-- gateway agrees on them: one user's read, armed or disarmed, or written again after a Redis
-- restart; or the sweep, which claims those that have run out.
--
-- A switch has run out when its time has passed, unless an outage came first. An outage — no
-- sweep by any gateway for ARGV[8] ms (every gateway down, Redis unreachable), or a Redis restart
-- (another run_id) — is not the users': every switch that had not run out by the last sweep before
-- it counts down again from its end, outage after outage. The outages of the last day are
-- recorded, and a switch is pushed back past them as it comes due, so a sweep costs the switches
-- due, never all of them. An outage ends with the first sweep after it, or the first arm or
-- disarm taken during it.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after), a field per user:
--         "<set µs> <state> <owner no> <timeout ms> <fire id>", where the state is Redis's clock
--         in ms when it runs out while armed, '-' once disarmed, 'x<ms>' once fired (at <ms>)
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due): when it runs out,
--         the end of the lease of its firing, or when a disarmed or fired one is forgotten
-- KEYS[3] the last sweep (<prefix>:cancel-after:swept): "<Redis run_id> <ms>"
-- KEYS[4] the outages of the last day, oldest first (<prefix>:cancel-after:outages): "<last sweep
--         before it, ms> <its end, ms>" each, one after the other
-- ARGV[1] user id ('' for 'due')
-- ARGV[2] the mode:
--         'get';
--         'set': ARGV[3] the owner number, ARGV[4] the timeout in ms (0 disarms), ARGV[5] the id
--           of the mass cancel it fires;
--         'resend': the same, and ARGV[6] the set time (µs) and ARGV[7] the state of a switch set
--           before a Redis restart;
--         'due': ARGV[3] the lease, ms, ARGV[4] at most this many
-- ARGV[8] the longest gap between sweeps that is not an outage, ms
-- ARGV[9] how long a disarmed or fired switch is remembered, ms
--
-- Returns, for 'get': {3, the switch or '', when it runs out or '', now ms}. For 'set' and
-- 'resend': {1, set µs, state, now ms}: written; {0}: a 'resend' of a switch Redis holds one set
-- as late or later than, or older than a disarmed one is remembered: nothing written; {2,
-- switch}: a 'set' while the switch held has run out and not fired yet: nothing written (its
-- running out is final: fire it, mark it fired, then set again). For 'due': {now ms, 1 if it
-- ended an outage else 0, how many switches it pushed back, user id, switch, ...}: each switch
-- that has run out, leased to the caller (due again at the lease's end unless marked fired by
-- then, so that a gateway that dies while firing one leaves it to another); disarmed and fired
-- switches whose time to be forgotten has come are forgotten.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local mode = ARGV[2]

-- The outages recorded, oldest first ({last sweep before it, its end} each), and one under way
-- that ends now, if no sweep has seen its end yet.
local outages = {}
for l, e in string.gmatch(redis.call('GET', KEYS[4]) or '', '(%d+) (%d+)') do
  outages[#outages + 1] = {tonumber(l), tonumber(e)}
end
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local ended = false
do
  local swept = redis.call('GET', KEYS[3])
  local swept_run, swept_ms
  if swept then
    swept_run, swept_ms = string.match(swept, '^(%x+) (%d+)$')
  end
  if swept_run ~= run or now_ms - tonumber(swept_ms) > tonumber(ARGV[8]) then
    outages[#outages + 1] = {tonumber(swept_ms) or 0, now_ms}
    ended = true
  end
end

-- Records the outage that ends now (those of the last day kept), and this as a sweep.
local function end_outage()
  if ended then
    local kept = {}
    for _, o in ipairs(outages) do
      if o[2] > now_ms - 86400000 then
        kept[#kept + 1] = string.format('%.0f %.0f', o[1], o[2])
      end
    end
    redis.call('SET', KEYS[4], table.concat(kept, ' '))
  end
  redis.call('SET', KEYS[3], run .. ' ' .. now_ms)
end

-- When a switch runs out (ms), past every outage; nil when it is not armed.
local function runs_out(held)
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

if mode == 'due' then
  end_outage()
  local out = {now_ms, ended and 1 or 0, 0}
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[4]))
  for _, user in ipairs(due) do
    local held = redis.call('HGET', KEYS[1], user)
    local at = runs_out(held)
    if at and at > now_ms then
      -- Pushed back by an outage.
      local set_us, rest = string.match(held, '^(%d+) %d+ (.*)$')
      local state = string.format('%.0f', at)
      redis.call('HSET', KEYS[1], user, set_us .. ' ' .. state .. ' ' .. rest)
      redis.call('ZADD', KEYS[2], state, user)
      out[3] = out[3] + 1
    elseif at then
      redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[3]), user)
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
end

local held = redis.call('HGET', KEYS[1], ARGV[1])
if mode == 'get' then
  local at = runs_out(held)
  return {3, held or '', at and string.format('%.0f', at) or '', now_ms}
end

-- An arm taken ends the outage under way, if any: the system is taking arms again.
if ended then
  end_outage()
end
local held_us = held and tonumber(string.match(held, '^%d+')) or 0
local set_us, state
if mode == 'set' then
  local at = runs_out(held)
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
