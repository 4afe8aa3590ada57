-- One node's clients in id order after a point, with their records, in one snapshot.
-- KEYS: clients, client info. ARGV: lowest score (ZRANGEBYSCORE syntax), count.
-- Reply: {ids, records} (a record is nil if it went missing).
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, ARGV[2])
if #ids == 0 then
  return {{}, {}}
end
return {ids, redis.call('HMGET', KEYS[2], unpack(ids))}
