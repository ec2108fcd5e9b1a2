-- Claims the cancel-all-after switches that have run out (src/queue/cancel-after.ts): each is
-- leased to the caller, due again at the lease's end unless marked fired by then (so that a
-- gateway that dies while firing one leaves it to another). Disarmed and fired switches whose
-- time to be forgotten has come are forgotten.
--
-- After an outage — no sweep by any gateway for longer than ARGV[3] (every gateway down, Redis
-- unreachable), or a Redis restart (a new run_id) — nothing is claimed: every armed switch counts
-- down again from now instead, since the system could take no arm meanwhile.
--
-- KEYS[1] each user's switch (<prefix>:cancel-after; see cancel-after-set-2.lua)
-- KEYS[2] when each user's switch is next due, ms (<prefix>:cancel-after:due)
-- KEYS[3] the last sweep (<prefix>:cancel-after:swept): "<Redis run_id> <ms>"
-- ARGV[1] the lease, ms
-- ARGV[2] at most this many
-- ARGV[3] the longest gap between sweeps that is not an outage, ms
--
-- Returns {now ms, -1, user id, switch, user id, switch, ...}; after an outage {now ms, how many
-- armed switches count down again}.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)')
local last = redis.call('GET', KEYS[3])
redis.call('SET', KEYS[3], run .. ' ' .. now_ms)
local last_run, last_ms
if last then
  last_run, last_ms = string.match(last, '^(%x+) (%d+)$')
end
if last_run ~= run or now_ms - tonumber(last_ms) > tonumber(ARGV[3]) then
  local all = redis.call('HGETALL', KEYS[1])
  local n = 0
  for i = 1, #all, 2 do
    local set_us, runs_out, owner, timeout, rest =
      string.match(all[i + 1], '^(%d+) (%d+) (%d+) (%d+) (.*)$')
    if runs_out then
      local again = string.format('%.0f', math.max(tonumber(runs_out), now_ms + tonumber(timeout)))
      redis.call('HSET', KEYS[1], all[i],
        set_us .. ' ' .. again .. ' ' .. owner .. ' ' .. timeout .. ' ' .. rest)
      redis.call('ZADD', KEYS[2], again, all[i])
      n = n + 1
    end
  end
  return {now_ms, n}
end
local out = {now_ms, -1}
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
