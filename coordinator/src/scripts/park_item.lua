-- park_item.lua: records on a run that one of its background items was parked (set aside after a
-- panic or a non-transient error), and appends a `parked` event to its history.
-- KEYS[1] the run hash ({<ns>}:{run}:run), KEYS[2] the run's event stream ({<ns>}:{run}:events).
-- ARGV[1] JSON (store::admin::ParkOnRunArgs): {"entry": the entry shown in GetRun's
-- `parked_items`, "<loop> <member>: <reason> (at <time>)", "now": Unix ms, "max_events":
-- approximate most events kept in the stream, "step": the step the item belongs to ('' for the
-- run), "attempt": the attempt (a string, '0' when none)}.
-- Returns {'recorded'}, or {'no_run'} when the run does not exist (expired): nothing is created then.
-- Invariant: the run's `parked_items` field is a JSON array of at most 20 strings, oldest first.
local a = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return { 'no_run' }
end
local list = {}
local cur = redis.call('HGET', KEYS[1], 'parked_items')
if cur and cur ~= '' then
  local ok, decoded = pcall(cjson.decode, cur)
  if ok and type(decoded) == 'table' then
    list = decoded
  end
end
table.insert(list, a.entry)
while #list > 20 do
  table.remove(list, 1)
end
redis.call('HSET', KEYS[1], 'parked_items', cjson.encode(list))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', tostring(a.max_events), '*',
  'kind', 'parked', 'step', a.step, 'attempt', a.attempt, 'status', 'parked',
  'detail', a.entry, 'at', string.format('%.0f', a.now))
return { 'recorded' }
