-- Removes a channel's entries older than a cutoff, oldest first, and takes their bytes
-- off the retained total. Stream ids are seqs, not times, so XTRIM MINID cannot do it.
--
-- KEYS: 1 meta hash, 2 stream
-- ARGV: 1 cutoff (µs): entries with a time below it go
-- Reply: how many entries were removed

local meta, stream = KEYS[1], KEYS[2]
if redis.call('EXISTS', meta) == 0 then return 0 end
local cutoff = tonumber(ARGV[1])
local batch = 100

local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local removed = 0
while true do
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', batch)
  local expired, bytes = {}, 0
  for _, entry in ipairs(oldest) do
    if tonumber(field(entry, 't') or '0') >= cutoff then break end
    expired[#expired + 1] = entry[1]
    bytes = bytes + tonumber(field(entry, 'n') or '0')
  end
  if #expired > 0 then
    redis.call('XDEL', stream, unpack(expired))
    redis.call('HINCRBY', meta, 'b', string.format('%d', -bytes))
    removed = removed + #expired
  end
  if #expired < batch then break end
end
return removed
