-- Appends one message to a channel: checks the incarnation and the generation, assigns
-- seq and time, adds it to the stream within the retention, publishes it live, and
-- indexes it under its tags.
--
-- KEYS: 1 meta hash, 2 stream, 3 channel index, 4.. one stream per tag
-- ARGV: 1 cid (0: create when missing), 2 default options, 3 generation, 4 new epoch,
--       5 now (µs), 6 max length (0: none), 7 max bytes (0: none), 8 message id,
--       9 payload, 10 body length, 11 channel topic, 12 cid for a new incarnation,
--       13 channel name, 14 tag stream max length (0: none), 15.. one topic per tag
-- Reply: {'OK', seq, epoch, time, cid, created, new_epoch}
--      | {'DELETED'} | {'STALE_GEN', stored generation}
--
-- Epochs and cids stay strings: they may exceed what a Lua number holds exactly. Seqs,
-- times and lengths are far below 2^53; they are formatted with %d, never with
-- tostring (which would switch to exponent notation past 14 digits).

local meta, stream = KEYS[1], KEYS[2]
local cid, generation = ARGV[1], ARGV[3]

local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local stored = redis.call('HMGET', meta, 'cid', 'e', 'g', 't')
local epoch, last_time = stored[2], stored[4] or '0'
local created, new_epoch = 0, 0
if not stored[1] then
  if cid ~= '0' then return {'DELETED'} end
  cid, epoch, last_time = ARGV[12], ARGV[4], '0'
  -- A stream without its meta (never left by delete) would hold seqs the new
  -- incarnation reuses.
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'o', ARGV[2], 'cid', cid, 'e', epoch, 'g', generation,
    's', 0, 't', 0, 'b', 0)
  redis.call('ZADD', KEYS[3], 0, ARGV[13])
  created = 1
else
  if cid ~= '0' and cid ~= stored[1] then return {'DELETED'} end
  cid = stored[1]
  local stored_generation = tonumber(stored[3] or '0')
  if stored_generation > tonumber(generation) then
    return {'STALE_GEN', stored[3]}
  elseif stored_generation < tonumber(generation) then
    epoch = ARGV[4]
    redis.call('HSET', meta, 'e', epoch, 'g', generation)
    new_epoch = 1
  end
end

local seq = redis.call('HINCRBY', meta, 's', 1)
local seq_text = string.format('%d', seq)
local seq_id = seq_text .. '-0'
local time = ARGV[5]
if tonumber(last_time) > tonumber(time) then time = last_time end
redis.call('HSET', meta, 't', time)

local body_len = ARGV[10]
local max_len = tonumber(ARGV[6])
if max_len > 0 then
  -- MAXLEN drops entries without saying which: take their bytes off first.
  local excess = redis.call('XLEN', stream) + 1 - max_len
  if excess > 0 then
    for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)) do
      redis.call('HINCRBY', meta, 'b', '-' .. (field(entry, 'n') or '0'))
    end
  end
  redis.call('XADD', stream, 'MAXLEN', ARGV[6], seq_id,
    'f', ARGV[9], 't', time, 'i', ARGV[8], 'n', body_len)
else
  redis.call('XADD', stream, seq_id, 'f', ARGV[9], 't', time, 'i', ARGV[8], 'n', body_len)
end

local bytes = redis.call('HINCRBY', meta, 'b', body_len)
local max_bytes = tonumber(ARGV[7])
if max_bytes > 0 then
  while bytes > max_bytes do
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    if oldest == nil or oldest[1] == seq_id then break end
    redis.call('XDEL', stream, oldest[1])
    bytes = redis.call('HINCRBY', meta, 'b', '-' .. (field(oldest, 'n') or '0'))
  end
end

local live = seq_text .. ':' .. epoch .. ':' .. time .. ':' .. ARGV[9]
redis.call('PUBLISH', ARGV[11], live)

for i = 4, #KEYS do
  local topic = ARGV[15 + i - 4]
  if ARGV[14] ~= '0' then
    redis.call('XADD', KEYS[i], 'MAXLEN', ARGV[14], '*', 'c', ARGV[13], 'q', seq_text,
      'e', epoch, 't', time, 'i', ARGV[8], 'f', ARGV[9])
  else
    redis.call('XADD', KEYS[i], '*', 'c', ARGV[13], 'q', seq_text,
      'e', epoch, 't', time, 'i', ARGV[8], 'f', ARGV[9])
  end
  redis.call('PUBLISH', topic, live)
end

return {'OK', seq, epoch, time, cid, created, new_epoch}
