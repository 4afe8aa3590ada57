-- Creates a group unless one of that name exists; either way returns the group's meta.
-- KEYS: meta, members, index. ARGV: name, description, creator, cid, epoch, generation.
-- Reply: {created (0/1), description, creator, cid, epoch, top seq, member count}.
-- Epochs and cids stay strings: they may exceed what a Lua number holds exactly.
local meta, members, index = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 1 then
  local m = redis.call('HMGET', meta, 'd', 'o', 'cid', 'e', 's')
  return {0, m[1], m[2], m[3], m[4], m[5], redis.call('ZCARD', members)}
end
redis.call('HSET', meta, 'd', ARGV[2], 'o', ARGV[3], 'cid', ARGV[4], 'e', ARGV[5],
  'g', ARGV[6], 's', '0', 't', '0')
redis.call('ZADD', index, 0, ARGV[1])
return {1, ARGV[2], ARGV[3], ARGV[4], ARGV[5], '0', 0}
