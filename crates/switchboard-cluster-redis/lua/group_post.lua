-- Appends a member's post to a group and publishes it, in one step: the membership
-- check and the append are atomic, so a post racing with its sender's leave is either
-- before the leave (stored, published before the leave event) or refused.
-- KEYS: meta, stream, members.
-- ARGV: cid (0: any), user, generation, new epoch, now (µs), max length (0: none),
--       message id (16 bytes), payload, topic.
-- Reply: {'OK', seq, epoch, time, new epoch (0/1)}, {'DELETED'}, {'NOT_MEMBER'},
--        {'STALE_GEN', stored generation}.
-- Epochs stay strings; seqs, generations and times are far below 2^53, so Lua numbers
-- hold them exactly.
local meta, stream, members = KEYS[1], KEYS[2], KEYS[3]
local m = redis.call('HMGET', meta, 'cid', 'e', 'g', 't')
local cid = m[1]
if not cid or (ARGV[1] ~= '0' and cid ~= ARGV[1]) then
  return {'DELETED'}
end
if not redis.call('ZSCORE', members, ARGV[2]) then
  return {'NOT_MEMBER'}
end
local epoch = m[2]
local stored_gen = tonumber(m[3])
local gen = tonumber(ARGV[3])
local new_epoch = 0
if stored_gen > gen then
  return {'STALE_GEN', m[3]}
elseif stored_gen < gen then
  epoch = ARGV[4]
  redis.call('HSET', meta, 'e', epoch, 'g', ARGV[3])
  new_epoch = 1
end
local seq = redis.call('HINCRBY', meta, 's', 1)
local time = ARGV[5]
if tonumber(m[4]) > tonumber(time) then
  time = m[4]
end
redis.call('HSET', meta, 't', time)
local seq_text = string.format('%d', seq)
local payload = ARGV[8]
if ARGV[6] ~= '0' then
  redis.call('XADD', stream, 'MAXLEN', ARGV[6], seq_text .. '-0',
    'f', payload, 't', time, 'i', ARGV[7], 'n', #payload)
else
  redis.call('XADD', stream, seq_text .. '-0',
    'f', payload, 't', time, 'i', ARGV[7], 'n', #payload)
end
redis.call('PUBLISH', ARGV[9], seq_text .. ':' .. epoch .. ':' .. time .. ':' .. payload)
return {'OK', seq, epoch, time, new_epoch}
