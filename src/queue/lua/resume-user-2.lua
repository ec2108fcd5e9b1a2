-- Resumes a user's trading: out of the set of halted users, and the time of the resume kept, so
-- that a restore that read PostgreSQL before the resume committed does not halt the user again
-- (restore-halts-2.lua).
--
-- KEYS[1] the users whose trading is halted (<prefix>:halted)
-- KEYS[2] when each user was last resumed, Redis's clock in microseconds (<prefix>:resumed)
-- ARGV[1] user id
local now = redis.call('TIME')
redis.call('HSET', KEYS[2], ARGV[1], now[1] * 1000000 + now[2])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
