-- create_run.lua: creates a run and dispatches its root steps, unless the run id exists already
-- (which is how an idempotency key returns the same run: the id is derived from the key).
-- ARGV[4] run id, [5] workflow, [6] version, [7] input JSON, [8] idempotency key,
-- [9] all step ids (comma-separated, definition order), [10] root step ids (comma-separated).
-- Returns {'created'} or {'exists', status}.
-- Invariant: a run is created whole (run, every step, its first events) or not at all.
if redis.call('EXISTS', RUN) == 1 then
  return { 'exists', redis.call('HGET', RUN, 'status') or '' }
end
local steps = split(ARGV[9], ',')
redis.call('HSET', RUN, 'id', ARGV[4], 'workflow', ARGV[5], 'version', ARGV[6], 'status', 'pending',
  'input', ARGV[7], 'idempotency_key', ARGV[8], 'created_at', tostring(NOW), 'step_ids', ARGV[9],
  'steps_left', tostring(#steps))
for _, s in ipairs(steps) do
  sset(s, 'status', 'pending', 'attempt', '0')
end
event('run', '', 0, 'pending', '')
for _, s in ipairs(split(ARGV[10], ',')) do
  dispatch(s, 1)
end
return { 'created' }
