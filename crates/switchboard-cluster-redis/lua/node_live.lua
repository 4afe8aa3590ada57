-- The incarnations of the nodes whose registration has not expired (Redis clock).
-- KEYS: nodes.
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], string.format('(%d', now_ms), '+inf')
