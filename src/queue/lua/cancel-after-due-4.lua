-- Claims the cancel-all-after switches that have run out (src/queue/cancel-after.ts): each is
-- leased to the caller, due again at the lease's end unless marked fired by then (so that a
-- gateway that dies while firing one leaves it to another). Disarmed and fired switches whose
-- time to be forgotten has come are forgotten.
--
-- An outage — no sweep by any gateway for longer than ARGV[3] (every gateway down, Redis
-- unreachable), or a Redis restart (another run_id) — is not the users': every switch that had
-- not run out by the last sweep before it counts down again from its end (an arm taken during it
-- ends it: cancel-after-switch-4.lua). That is recorded (the
-- last sweep before it, and its end), and each switch is pushed back when it comes due, so the
-- cost is the switches due, never all of them.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after; see cancel-after-switch-4.lua)
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due)
-- KEYS[3] the last sweep (<prefix>:cancel-after:swept): "<Redis run_id> <ms>"
-- KEYS[4] the outages of the last day, oldest first (<prefix>:cancel-after:outages): "<last sweep
--         before it, ms> <its end, ms>" each, one after the other
-- ARGV[1] the lease, ms
-- ARGV[2] at most this many
-- ARGV[3] the longest gap between sweeps that is not an outage, ms
--
-- Returns {now ms, 1 if this sweep found an outage over else 0, how many switches it pushed
-- back, user id, switch, user id, switch, ...}.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local swept = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], run .. ' ' .. now_ms)
local swept_run, swept_ms
if swept then
  swept_run, swept_ms = string.match(swept, '^(%x+) (%d+)$')
end
local outages = {}
for l, e in string.gmatch(redis.call('GET', KEYS[4]) or '', '(%d+) (%d+)') do
  outages[#outages + 1] = {tonumber(l), tonumber(e)}
end
local outage_over = 0
if swept_run ~= run or now_ms - tonumber(swept_ms) > tonumber(ARGV[3]) then
  outages[#outages + 1] = {tonumber(swept_ms) or 0, now_ms}
  local kept = {}
  for _, o in ipairs(outages) do
    if o[2] > now_ms - 86400000 then
      kept[#kept + 1] = string.format('%.0f %.0f', o[1], o[2])
    end
  end
  redis.call('SET', KEYS[4], table.concat(kept, ' '))
  outage_over = 1
end
local out = {now_ms, outage_over, 0}
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms, 'LIMIT', 0, tonumber(ARGV[2]))
for _, user in ipairs(due) do
  local held = redis.call('HGET', KEYS[1], user)
  local set_us, at, owner, timeout, rest
  if held then
    set_us, at, owner, timeout, rest = string.match(held, '^(%d+) (%d+) (%d+) (%d+) (.*)$')
  end
  if at then
    -- Outage after outage, oldest first: one that had not run out by the last sweep before it
    -- counts down again from its end.
    local again = tonumber(at)
    for _, o in ipairs(outages) do
      if again > o[1] then
        again = math.max(again, o[2] + tonumber(timeout))
      end
    end
    if again > now_ms then
      local state = string.format('%.0f', again)
      redis.call('HSET', KEYS[1], user,
        set_us .. ' ' .. state .. ' ' .. owner .. ' ' .. timeout .. ' ' .. rest)
      redis.call('ZADD', KEYS[2], state, user)
      out[3] = out[3] + 1
    else
      redis.call('ZADD', KEYS[2], now_ms + tonumber(ARGV[1]), user)
      out[#out + 1] = user
      out[#out + 1] = held
    end
  else
    redis.call('ZREM', KEYS[2], user)
    if held then
      redis.call('HDEL', KEYS[1], user)
    end
  end
end
return out
