-- Keeps a node registered for another TTL, and drops expired nodes from the registry.
-- A node that expired meanwhile is not renewed: what is left of it is removed, so that
-- it registers again and republishes its clients in full.
-- KEYS: nodes, info, clients, client info, names. ARGV: incarnation, ttl (ms).
-- Reply: 1 renewed, 0 the node had expired.
local nodes, info, clients, cinfo, names = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', nodes, '-inf', now_ms)
if not redis.call('ZSCORE', nodes, ARGV[1]) or redis.call('EXISTS', info) == 0 then
  redis.call('ZREM', nodes, ARGV[1])
  redis.call('DEL', info, clients, cinfo, names)
  return 0
end
redis.call('ZADD', nodes, now_ms + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', info, ARGV[2])
redis.call('PEXPIRE', clients, ARGV[2])
redis.call('PEXPIRE', cinfo, ARGV[2])
redis.call('PEXPIRE', names, ARGV[2])
return 1
