-- Adds a member to a group and announces it on the group's topic, in one step, so that
-- every node sees joins, leaves and posts in one order.
-- The join is also announced on the control topic every node follows ("J" name NUL
-- user), so that a node with sessions of the user follows the group for them.
-- KEYS: meta, members, user_groups. ARGV: name, user, topic, control topic.
-- Reply: 0 no such group, 1 already a member, 2 joined.
local meta, members, user_groups = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then
  return 0
end
if redis.call('ZADD', members, 'NX', 0, ARGV[2]) == 0 then
  return 1
end
redis.call('SADD', user_groups, ARGV[1])
redis.call('PUBLISH', ARGV[3], 'J:' .. ARGV[2])
redis.call('PUBLISH', ARGV[4], 'J' .. ARGV[1] .. '\0' .. ARGV[2])
return 2
