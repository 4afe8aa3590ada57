-- Reads a channel's history in one snapshot: its epoch, first and top seqs, and the
-- entries asked for, oldest first. The generation rule of the append script applies
-- (an older stored generation gets a new epoch), so a read after a failover already
-- reports the new epoch. A newer stored generation is reported as stored: the data is
-- as current as it gets, and only appends must wait for the node to catch up.
--
-- KEYS: 1 meta hash, 2 stream
-- ARGV: 1 generation, 2 new epoch, 3 mode, 4 its argument, 5 limit (0: no entries)
--   modes: 'seq' n (from seq n on), 'time' t (from the first entry with time >= t),
--          'last' n (the newest n), 'latest' (the newest one), 'id' i (the entry whose
--          field i is this message id)
-- Reply: {epoch, first seq (0: empty), top seq, entries} | nil when no such channel;
--   entries as XRANGE gives them: {{'<seq>-0', {field, value, ...}}, ...}

local meta, stream = KEYS[1], KEYS[2]
local stored = redis.call('HMGET', meta, 'e', 'g', 's')
if not stored[1] then return nil end
local epoch, top = stored[1], stored[3] or '0'
if tonumber(stored[2] or '0') < tonumber(ARGV[1]) then
  epoch = ARGV[2]
  redis.call('HSET', meta, 'e', epoch, 'g', ARGV[1])
end

local mode, arg, limit = ARGV[3], ARGV[4], tonumber(ARGV[5])

local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function seq_of(entry)
  return tonumber(string.match(entry[1], '^(%d+)'))
end

local function reversed(list)
  local out = {}
  for i = #list, 1, -1 do out[#out + 1] = list[i] end
  return out
end

local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
local first = '0'
if oldest then first = string.match(oldest[1], '^(%d+)') end

local entries = {}
if limit > 0 and oldest then
  if mode == 'seq' then
    entries = redis.call('XRANGE', stream, arg .. '-0', '+', 'COUNT', limit)
  elseif mode == 'last' or mode == 'latest' then
    local count = limit
    if mode == 'latest' then count = 1
    elseif tonumber(arg) < count then count = tonumber(arg) end
    if count > 0 then
      entries = reversed(redis.call('XREVRANGE', stream, '+', '-', 'COUNT', count))
    end
  elseif mode == 'time' then
    -- Times never decrease along the stream: find the first entry at or after the
    -- time by bisecting its seqs, each probe the first entry at or after a seq.
    local since = tonumber(arg)
    local low, high = seq_of(oldest), tonumber(top)
    local found = nil
    while low <= high do
      local mid = math.floor((low + high) / 2)
      local probe = redis.call('XRANGE', stream, string.format('%d-0', mid), '+', 'COUNT', 1)[1]
      if probe == nil then
        high = mid - 1
      else
        local probe_seq = seq_of(probe)
        if tonumber(field(probe, 't') or '0') >= since then
          found = probe_seq
          high = mid - 1
        else
          low = probe_seq + 1
        end
      end
    end
    if found then
      entries = redis.call('XRANGE', stream, string.format('%d-0', found), '+', 'COUNT', limit)
    end
  elseif mode == 'id' then
    local batch, upper = 64, '+'
    while #entries == 0 do
      local newest = redis.call('XREVRANGE', stream, upper, '-', 'COUNT', batch)
      for _, entry in ipairs(newest) do
        if field(entry, 'i') == arg then
          entries = {entry}
          break
        end
      end
      if #newest < batch then break end
      upper = '(' .. newest[#newest][1]
    end
  else
    return redis.error_reply('ERR unknown read mode ' .. mode)
  end
end

return {epoch, first, top, entries}
