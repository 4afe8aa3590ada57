-- Deletes a group: meta, posts, members, each member's reverse-index entry and the
-- index entry; then tells the group's topic, after every earlier post and event.
-- KEYS: meta, stream, members, index, then the user_groups key of every member.
-- ARGV: name, topic, then the member names, in the order of their keys.
-- The caller read the members beforehand: if they changed meanwhile, nothing is done
-- and the reply asks for another attempt, so that no reverse-index entry is left.
-- Reply: {0} no such group, {1, cid} deleted, {2} members changed (try again).
local meta, stream, members, index = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local cid = redis.call('HGET', meta, 'cid')
if not cid then
  return {0}
end
local count = #ARGV - 2
if redis.call('ZCARD', members) ~= count then
  return {2}
end
for i = 1, count do
  if not redis.call('ZSCORE', members, ARGV[i + 2]) then
    return {2}
  end
end
for i = 1, count do
  redis.call('SREM', KEYS[i + 4], ARGV[1])
end
redis.call('DEL', meta, stream, members)
redis.call('ZREM', index, ARGV[1])
redis.call('PUBLISH', ARGV[2], 'D:' .. cid)
return {1, cid}
