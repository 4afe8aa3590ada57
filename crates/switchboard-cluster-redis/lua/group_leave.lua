-- Removes a member from a group and announces it on the group's topic, in one step.
-- KEYS: meta, members, user_groups. ARGV: name, user, topic.
-- Reply: 0 no such group, 1 not a member, 2 left.
local meta, members, user_groups = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then
  return 0
end
if redis.call('ZREM', members, ARGV[2]) == 0 then
  return 1
end
redis.call('SREM', user_groups, ARGV[1])
redis.call('PUBLISH', ARGV[3], 'L:' .. ARGV[2])
return 2
