-- Puts back in the set of halted users those PostgreSQL held halted when it was read, but for a
-- user resumed since the read began (PostgreSQL's answer is older than the resume).
--
-- KEYS[1] the users whose trading is halted (<prefix>:halted)
-- KEYS[2] when each user was last resumed, Redis's clock in microseconds (<prefix>:resumed)
-- ARGV[1] Redis's clock in microseconds, read before PostgreSQL was
-- ARGV[2..] the ids of the users PostgreSQL holds halted
--
-- Returns how many were put back.
local added = 0
for i = 2, #ARGV do
  local resumed = redis.call('HGET', KEYS[2], ARGV[i])
  if not resumed or tonumber(resumed) < tonumber(ARGV[1]) then
    added = added + redis.call('SADD', KEYS[1], ARGV[i])
  end
end
return added
