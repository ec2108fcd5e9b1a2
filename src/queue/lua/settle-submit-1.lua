-- Tells a gateway that lost the reply to a submit (the connection broke, or the reply came too
-- late) what became of the order, once the answer can no longer change: the submit script
-- writes nothing after its deadline, so past it an order without a status hash never will have
-- one.
--
-- KEYS[1] the order's status hash ({sN}:o:<order id>)
-- ARGV[1] the submit's deadline, ms since the epoch
--
-- Returns {1, seq}: accepted; {2}: not accepted, and never will be; {0}: the deadline has not
-- passed yet, ask again.
local seq = redis.call('HGET', KEYS[1], 'q')
if seq then
  return {1, tonumber(seq)}
end
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) <= tonumber(ARGV[1]) then
  return {0}
end
return {2}
