-- park_item.lua: records on a run that one of its background items was parked (set aside after a
-- panic or a non-transient error), and appends a `parked` event to its history.
--
-- KEYS[1]  the run hash (<ns>:{run}:run)
-- KEYS[2]  the run's event stream (<ns>:{run}:events)
-- ARGV[1]  the entry shown in GetRun's `parked_items`: "<loop> <member>: <reason> (at <time>)"
-- ARGV[2]  now, Unix ms
-- ARGV[3]  approximate most events kept in the stream
-- ARGV[4]  the step the item belongs to ('' for the run)
-- ARGV[5]  the attempt ('0' when none)
--
-- Returns 1 when recorded, 0 when the run does not exist (expired): nothing is created then.
-- Invariant: the run's `parked_items` field is a JSON array of at most 20 strings, oldest first.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local list = {}
local cur = redis.call('HGET', KEYS[1], 'parked_items')
if cur and cur ~= '' then
  local ok, decoded = pcall(cjson.decode, cur)
  if ok and type(decoded) == 'table' then
    list = decoded
  end
end
table.insert(list, ARGV[1])
while #list > 20 do
  table.remove(list, 1)
end
redis.call('HSET', KEYS[1], 'parked_items', cjson.encode(list))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*',
  'kind', 'parked', 'step', ARGV[4], 'attempt', ARGV[5], 'status', 'parked',
  'detail', ARGV[1], 'at', ARGV[2])
return 1
