-- Moves the batch writer's group on a shard's order stream past entries it need not read: those
-- up to 0-<target>, whose outcomes the writer has committed (a PLACE there is superseded by the
-- state its batch's event entry carries; a cancel is never written to PostgreSQL). Behind a
-- backlog the event reads run far ahead of the order reads, and reading those PLACEs only to
-- acknowledge them took a fifth of a drain.
--
-- KEYS[1]  the order stream
-- ARGV[1]  the writer's group
-- ARGV[2]  only from a position at or past 0-<this>: PLACEs at or below it must be read
-- ARGV[3]  the target sequence
--
-- Only ever forward. Every sequence is one entry (`0-<seq>`, contiguous), so the group's
-- entries-read is set to what keeps Redis's lag exact: the entries after the target are
-- last - target. Returns the number of entries passed over (0: nothing to do).
local function seq(id)
  return tonumber(string.match(id, '-(%d+)$'))
end

local delivered
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1] end
    if g[i] == 'last-delivered-id' then last = g[i + 1] end
  end
  if name == ARGV[1] then delivered = last end
end
if delivered == nil then return 0 end

local from, kept, target = seq(delivered), tonumber(ARGV[2]), tonumber(ARGV[3])
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
