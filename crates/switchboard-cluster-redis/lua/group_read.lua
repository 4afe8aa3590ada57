-- Reads a group's posts in one snapshot: epoch, first and top seq, and the entries.
-- KEYS: meta, stream. ARGV: mode, argument, limit, generation, new epoch.
-- Modes: 'seq' (from seq ARGV[2] on), 'time' (from the first post at or after µs
-- ARGV[2]), 'last' (the newest ARGV[2], oldest first), 'latest' (the newest one),
-- 'id' (the post whose 16-byte id is ARGV[2]). At most `limit` entries.
-- A generation newer than the group's starts a new epoch, as a post would, so that a
-- read after a failover reports it; an older one (a node whose handshake is late) reads
-- what is stored without changing it.
-- Reply: {'NONE'} no such group, or {'OK', epoch, first seq, top seq, new epoch (0/1),
-- entries as XRANGE gives them}.
-- Posts are appended with ever larger seqs and only ever trimmed from the oldest end.
local meta, stream = KEYS[1], KEYS[2]
local mode, arg, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local m = redis.call('HMGET', meta, 'e', 'g', 's')
if not m[1] then
  return {'NONE'}
end
local epoch = m[1]
local new_epoch = 0
if tonumber(m[2]) < tonumber(ARGV[4]) then
  epoch = ARGV[5]
  redis.call('HSET', meta, 'e', epoch, 'g', ARGV[4])
  new_epoch = 1
end

local function seq_of(entry)
  return tonumber(string.match(entry[1], '^(%d+)-'))
end

local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then
      return fields[i + 1]
    end
  end
  return nil
end

local function first_at_or_after(seq)
  return redis.call('XRANGE', stream, string.format('%d-0', seq), '+', 'COUNT', 1)[1]
end

local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)[1]
local first = 0
if oldest then
  first = seq_of(oldest)
end
local entries = {}
if oldest and limit > 0 then
  local last = seq_of(newest)
  local start = nil
  if mode == 'seq' then
    start = math.max(tonumber(arg), first)
  elseif mode == 'last' then
    local count = tonumber(arg)
    if count > 0 then
      start = math.max(last - count + 1, first)
    end
  elseif mode == 'latest' then
    start = last
  elseif mode == 'time' then
    local wanted = tonumber(arg)
    if tonumber(field(newest, 't')) >= wanted then
      -- The smallest seq from which the first entry is at or after `wanted`.
      local low, high = first, last
      while low < high do
        local mid = math.floor((low + high) / 2)
        if tonumber(field(first_at_or_after(mid), 't')) >= wanted then
          high = mid
        else
          low = mid + 1
        end
      end
      start = low
    end
  elseif mode == 'id' then
    local cursor = '+'
    while true do
      local batch = redis.call('XREVRANGE', stream, cursor, '-', 'COUNT', 128)
      for _, entry in ipairs(batch) do
        if field(entry, 'i') == arg then
          entries = {entry}
          break
        end
      end
      if #entries > 0 or #batch < 128 then
        break
      end
      cursor = '(' .. batch[#batch][1]
    end
  else
    return redis.error_reply('ERR unknown read mode ' .. mode)
  end
  if start and start <= last then
    entries = redis.call('XRANGE', stream, string.format('%d-0', start), '+', 'COUNT', limit)
  end
end
return {'OK', epoch, first, m[3], new_epoch, entries}
