-- Deletes a channel (meta, stream, index entry) and publishes its tombstone on the
-- channel topic, after every message published before it.
--
-- KEYS: 1 meta hash, 2 stream, 3 channel index
-- ARGV: 1 channel name, 2 channel topic
-- Reply: the deleted incarnation's cid, or nil when there was no such channel

local meta = KEYS[1]
local cid = redis.call('HGET', meta, 'cid')
if not cid then return nil end
redis.call('DEL', meta, KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('PUBLISH', ARGV[2], 'D:' .. cid)
return cid
