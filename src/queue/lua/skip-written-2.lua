-- Moves the batch writer's group on a shard's order stream past entries it need not read: those
-- up to 0-<target>, whose outcomes the writer has committed (a PLACE there is superseded by the
-- state its batch's event entry carries; a cancel is never written to PostgreSQL). Behind a
-- backlog the event reads run far ahead of the order reads, and reading those PLACEs only to
-- acknowledge them took a fifth of a drain.
--
-- KEYS[1]  the order stream
-- KEYS[2]  the event stream (same slot)
-- ARGV[1]  the writer's group (on both)
-- ARGV[2]  only from a position at or past 0-<this>: PLACEs at or below it must be read
-- ARGV[3]  the target sequence
--
-- Only ever forward, and never past what the group has been delivered of the event stream here: a
-- Redis that restarted without its last writes hands out their sequences again, and the writer's
-- target may come from outcomes it no longer holds. Every sequence is one entry (`0-<seq>`, contiguous), so the group's
-- entries-read is set to what keeps Redis's lag exact: the entries after the target are
-- last - target. Returns the number of entries passed over (0: nothing to do).
local function seq(id)
  return tonumber(string.match(id, '-(%d+)$'))
end

-- The group's last-delivered id on a stream, or nil.
local function delivered(stream)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local name, last
    for i = 1, #g, 2 do
      if g[i] == 'name' then name = g[i + 1] end
      if g[i] == 'last-delivered-id' then last = g[i + 1] end
    end
    if name == ARGV[1] then return last end
  end
  return nil
end

local orders, events = delivered(KEYS[1]), delivered(KEYS[2])
if orders == nil or events == nil then return 0 end
local from, kept, target = seq(orders), tonumber(ARGV[2]), tonumber(ARGV[3])
if target > seq(events) then target = seq(events) end
if from < kept or from >= target then return 0 end

local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last, added
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = seq(info[i + 1]) end
  if info[i] == 'entries-added' then added = info[i + 1] end
end
if target > last then target = last end
if from >= target then return 0 end
local read = added - (last - target)
if read < 0 then read = 0 end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], '0-' .. target, 'ENTRIESREAD', read)
return target - from
