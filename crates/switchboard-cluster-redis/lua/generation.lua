-- The backplane generation, checked at every handshake of a node's command connection.
--
-- KEYS[1] the replication id the generation belongs to, KEYS[2] the generation.
-- ARGV[1] master_replid, ARGV[2] master_replid2 (the id this master had before it was
-- promoted), ARGV[3] '1' when a restart keeps every acknowledged write (appendonly yes
-- and appendfsync always), ARGV[4] the highest generation the node has seen.
--
-- The generation changes whenever writes acknowledged before may be gone: Redis came
-- back empty, a replica was promoted, or a restart kept only part of its data. It never
-- goes back, even when Redis lost the key itself: the node's own knowledge is a floor.
-- Generations are small counters, far below 2^53, so Lua's doubles hold them exactly.

local stored_replid = redis.call('GET', KEYS[1])
local stored_gen = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local known_gen = tonumber(ARGV[4]) or 0

if stored_replid == ARGV[1] and stored_gen > 0 and stored_gen >= known_gen then
  return stored_gen
end

local keep = false
if stored_replid and stored_replid ~= ARGV[2] and ARGV[3] == '1'
    and stored_gen > 0 and stored_gen >= known_gen then
  -- A restart that kept every acknowledged write: nothing was lost.
  keep = true
end

local gen = stored_gen
if not keep then
  gen = math.max(stored_gen, known_gen) + 1
  redis.call('SET', KEYS[2], gen)
end
redis.call('SET', KEYS[1], ARGV[1])
return gen
