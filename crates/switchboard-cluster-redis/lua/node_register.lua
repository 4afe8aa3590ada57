-- Registers a node under an incarnation it was given by INCR (or keeps, when it comes
-- back after expiring): its entry in the registry, scored by when it expires on the
-- Redis clock, and its info hash; its keys live for the TTL unless heartbeats renew them.
-- KEYS: nodes, info, clients, client info, names. ARGV: incarnation, ttl (ms), node-link
-- address, start time (µs), version.
-- Reply: when the registration expires (ms since the epoch, Redis clock).
local nodes, info, clients, cinfo, names = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = redis.call('TIME')
local expires = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[2])
redis.call('ZADD', nodes, expires, ARGV[1])
redis.call('DEL', info)
redis.call('HSET', info, 'a', ARGV[3], 's', ARGV[4], 'v', ARGV[5])
redis.call('PEXPIRE', info, ARGV[2])
redis.call('PEXPIRE', clients, ARGV[2])
redis.call('PEXPIRE', cinfo, ARGV[2])
redis.call('PEXPIRE', names, ARGV[2])
return expires
