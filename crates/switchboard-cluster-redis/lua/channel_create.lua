-- Creates a channel unless it exists; either way returns what is stored.
--
-- KEYS: 1 meta hash, 2 stream, 3 channel index
-- ARGV: 1 options, 2 cid for the new incarnation, 3 epoch, 4 generation, 5 channel name
-- Reply: {created (0|1), options, cid, epoch, top seq}

local meta, stream = KEYS[1], KEYS[2]
local stored = redis.call('HMGET', meta, 'o', 'cid', 'e', 's')
if stored[2] then
  return {0, stored[1] or '', stored[2], stored[3] or '0', stored[4] or '0'}
end
-- A stream without its meta (never left by delete) would hold seqs the new
-- incarnation reuses.
redis.call('DEL', stream)
redis.call('HSET', meta, 'o', ARGV[1], 'cid', ARGV[2], 'e', ARGV[3], 'g', ARGV[4],
  's', 0, 't', 0, 'b', 0)
redis.call('ZADD', KEYS[3], 0, ARGV[5])
return {1, ARGV[1], ARGV[2], ARGV[3], '0'}
