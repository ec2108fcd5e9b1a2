-- Adds a record the batch writer could not write to its stream's rejects, once: a flush run again
-- (Redis failed after the rejects were added, or the writer died before its acknowledgement)
-- refuses the same records again, and they must not be set aside twice. What was set aside is
-- remembered for an hour (a flush is run again within seconds), by the entry it came from, its
-- place among that entry's refused records, and its text: a restarted Redis that lost its last
-- writes can hand out an entry's sequence again, for another record, which is added.
--
-- KEYS[1] the rejects stream          (<stream>:rejects)
-- KEYS[2] what it was given lately    (<stream>:rejects:seen, a hash)
-- ARGV[1] the record's place: <entry id>/<n>, the n-th record of the entry refused
-- ARGV[2] the entry's id   ARGV[3] the error code   ARGV[4] the error   ARGV[5] the record
--
-- Returns 1 when added, 0 when it was set aside already.
if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[5] then
  return 0
end
redis.call('XADD', KEYS[1], '*', 'id', ARGV[2], 'code', ARGV[3], 'error', ARGV[4], 'record', ARGV[5])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], 3600)
return 1
