-- Reads a tag's recent messages, oldest first. A tag stream mixes channels, so its
-- seqs are not ordered and its times only roughly: 'seq' and 'time' filter the whole
-- (bounded) stream instead of seeking.
--
-- KEYS: 1 tag stream
-- ARGV: 1 mode, 2 its argument, 3 limit (0: no entries)
--   modes: 'seq' n (entries with seq >= n), 'time' t (entries with time >= t),
--          'last' n (the newest n), 'latest' (the newest one), 'id' i (the entry whose
--          field i is this message id)
-- Reply: entries as XRANGE gives them

local stream = KEYS[1]
local mode, arg, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
if limit == 0 then return {} end

local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local function reversed(list)
  local out = {}
  for i = #list, 1, -1 do out[#out + 1] = list[i] end
  return out
end

if mode == 'last' or mode == 'latest' then
  local count = limit
  if mode == 'latest' then count = 1
  elseif tonumber(arg) < count then count = tonumber(arg) end
  if count == 0 then return {} end
  return reversed(redis.call('XREVRANGE', stream, '+', '-', 'COUNT', count))
end

local matches
if mode == 'seq' then
  local since = tonumber(arg)
  matches = function(entry) return tonumber(field(entry, 'q') or '0') >= since end
elseif mode == 'time' then
  local since = tonumber(arg)
  matches = function(entry) return tonumber(field(entry, 't') or '0') >= since end
elseif mode == 'id' then
  limit = 1
  matches = function(entry) return field(entry, 'i') == arg end
else
  return redis.error_reply('ERR unknown read mode ' .. mode)
end

local batch, lower, found = 100, '-', {}
while #found < limit do
  local entries = redis.call('XRANGE', stream, lower, '+', 'COUNT', batch)
  for _, entry in ipairs(entries) do
    if matches(entry) then
      found[#found + 1] = entry
      if #found == limit then break end
    end
  end
  if #entries < batch then break end
  lower = '(' .. entries[#entries][1]
end
return found
