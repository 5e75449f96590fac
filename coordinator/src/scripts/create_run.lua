-- create_run.lua: creates a run and dispatches its root steps, unless the run id exists already
-- (which is how an idempotency key returns the same run: the id is derived from the key).
-- ARGV[5] run id, [6] workflow, [7] version, [8] input JSON, [9] idempotency key,
-- [10] all step ids (comma-separated, definition order), [11] root step ids (comma-separated),
-- [12] [13] [14] for a child run: the parent run, step and attempt ('' otherwise); [15] 'workflow'
-- (a workflow step's child) or 'emit' (a run an emitting step started).
-- [16] the run-slot pool of a workflow with max_concurrent_runs ('' for none), [17] its limit,
-- [18] what a queued run waits for (shown to users), [19] the run's depth (sub-workflow levels below
-- its root run; 0 for a root); [20] (optional) the queued plan of the roots, JSON (see QUEUED in
-- common.lua): a root that goes straight to a worker joins its handler's queued index, KEYS[6..],
-- and gets its schedule-to-start timer in this commit; [21] (optional) the definition fence and
-- the run indexes, JSON (store::workflows::CreateFence): {"defs": i, "fence": j, "index": [k, l], "member": m}:
-- KEYS[i] the workflow's hash version -> definition, KEYS[j] the version's delete fence
-- (fence_workflow_version.lua), KEYS[k] and KEYS[l] the run indexes (all runs, the workflow's
-- runs), m the run's member in them; the run is refused unless its version is registered and not
-- fenced, and a created run joins both indexes in this commit.
-- Returns {'created'}, {'queued'} (created, but its roots wait for a run slot: wake_runs.lua
-- dispatches them), {'exists', status} or {'no_version'} (the version is deleted or being deleted:
-- nothing changes).
-- Invariant: a run is created whole (run, every step, its first events, with [21] its index
-- entries) or not at all, and (with [21]) only while its version is registered and not being
-- deleted; never more unfinished runs hold slots of a pool than its limit.
if redis.call('EXISTS', RUN) == 1 then
  return { 'exists', redis.call('HGET', RUN, 'status') or '' }
end
if ARGV[21] and ARGV[21] ~= '' then
  local fence = cjson.decode(ARGV[21])
  if redis.call('HEXISTS', KEYS[fence.defs], ARGV[7]) == 0 or redis.call('EXISTS', KEYS[fence.fence]) == 1 then
    return { 'no_version' }
  end
  for _, i in ipairs(fence.index) do
    redis.call('ZADD', KEYS[i], 0, fence.member)
  end
end
local steps = split(ARGV[10], ',')
redis.call('HSET', RUN, 'id', ARGV[5], 'workflow', ARGV[6], 'version', ARGV[7], 'status', 'pending',
  'input', ARGV[8], 'idempotency_key', ARGV[9], 'created_at', tostring(NOW), 'step_ids', ARGV[10],
  'steps_left', tostring(#steps), 'parent_run', ARGV[12], 'parent_step', ARGV[13], 'parent_attempt', ARGV[14],
  'parent_kind', ARGV[15], 'depth', ARGV[19] or '0')
for _, s in ipairs(steps) do
  sset(s, 'status', 'pending', 'attempt', '0')
end
event('run', '', 0, 'pending', '')
local pool = ARGV[16]
if pool ~= '' then
  local holders = PREFIX .. ':sem:' .. pool .. ':holders'
  local queue = PREFIX .. ':sem:' .. pool .. ':queue'
  redis.call('HSET', RUN, 'run_slot', pool, 'held_roots', ARGV[11])
  if redis.call('ZCARD', holders) >= tonumber(ARGV[17]) or redis.call('LLEN', queue) > 0 then
    redis.call('RPUSH', queue, RUN_ID)
    redis.call('HSET', RUN, 'waiting_for', ARGV[18])
    event('run', '', 0, 'pending', 'waiting for ' .. ARGV[18])
    return { 'queued' }
  end
  -- A run holds its slot until it finishes: no lease (score: the far future).
  redis.call('ZADD', holders, 9007199254740991, RUN_ID)
end
if ARGV[20] and ARGV[20] ~= '' then QUEUED = cjson.decode(ARGV[20]) end
for _, s in ipairs(split(ARGV[11], ',')) do
  dispatch(s, 1)
  if QUEUED and QUEUED[s] then index_queued(s, 1, QUEUED[s]) end
end
return { 'created' }
