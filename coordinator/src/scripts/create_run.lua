-- create_run.lua: creates a run and dispatches its root steps, unless the run id exists already
-- (which is how an idempotency key returns the same run: the id is derived from the key).
-- A (ARGV[6], store.rs `CreateRunArgs`): workflow, version; idempotency_key ('' for none);
--   step_ids: every step id, comma-separated, definition order; roots: the root step ids,
--   comma-separated; parent: for a child run { run, step, attempt, kind = 'workflow' (a workflow
--   step's child) | 'emit' (a run an emitting step started) }, absent for a root run; depth: the
--   run's depth (sub-workflow levels below its root run; 0 for a root); run_slot: for a workflow
--   with max_concurrent_runs { pool, limit, detail = what a queued run waits for, shown to users },
--   absent for none; graph: the run's graph, stored once (see put_graph in common.lua); queued:
--   the queued plan of the roots (see QUEUED in common.lua): a root that goes straight to a
--   worker joins its handler's queued index and gets its schedule-to-start timer in this commit;
--   fence: the definition fence and the run indexes (store::workflows::CreateFence):
--   {"defs": i, "fence": j, "index": [k, l], "member": m}: KEYS[i] the workflow's hash version ->
--   definition, KEYS[j] the version's delete fence (fence_workflow_version.lua), KEYS[k] and KEYS[l]
--   the run indexes (all runs, the workflow's runs), m the run's member in them; the run is refused
--   unless its version is registered and not fenced, and a created run joins both indexes here.
-- ARGV[7] the run input (JSON text; beside A, so a large input is not escaped twice).
-- KEYS[7] the run-slot pool's holders and KEYS[8] its queue (keys.rs `slot_holders`,
-- `slot_waiters`) when there is a run_slot; the queued indexes of `queued` after them, then the
-- four keys of `fence`.
-- Returns {'created'}, {'queued'} (created, but its roots wait for a run slot: wake_runs.lua
-- dispatches them), {'exists', status} or {'no_version'} (the version is deleted or being deleted:
-- nothing changes).
-- Invariant: a run is created whole (run, every step, its graph, its first events, its index
-- entries) or not at all, and only while its version is registered and not being deleted; never
-- more unfinished runs hold slots of a pool than its limit.
if redis.call('EXISTS', RUN) == 1 then
  return { 'exists', redis.call('HGET', RUN, 'status') or '' }
end
local fence = A.fence
if redis.call('HEXISTS', KEYS[fence.defs], tostring(A.version)) == 0 or redis.call('EXISTS', KEYS[fence.fence]) == 1 then
  return { 'no_version' }
end
for _, i in ipairs(fence.index) do
  redis.call('ZADD', KEYS[i], 0, fence.member)
end
local steps = split(A.step_ids, ',')
local parent = A.parent or {}
redis.call('HSET', RUN, 'id', RUN_ID, 'workflow', A.workflow, 'version', tostring(A.version), 'status', 'pending',
  'input', ARGV[7], 'idempotency_key', A.idempotency_key or '', 'created_at', tostring(NOW), 'step_ids', A.step_ids,
  'steps_left', tostring(#steps), 'parent_run', parent.run or '', 'parent_step', parent.step or '',
  'parent_attempt', parent.attempt and tostring(parent.attempt) or '', 'parent_kind', parent.kind or '',
  'depth', tostring(A.depth or 0))
-- Every step pending, in as few commands as the values allow (a run of 1,000 steps made 1,000 HSETs).
local fields = {}
for _, s in ipairs(steps) do
  fields[#fields + 1] = s .. ':status'
  fields[#fields + 1] = 'pending'
  fields[#fields + 1] = s .. ':attempt'
  fields[#fields + 1] = '0'
end
call_chunked('HSET', STEPS, {}, fields)
put_graph(A.graph)
event('run', '', 0, 'pending', '')
local slot = A.run_slot
if slot then
  local holders, queue = KEYS[7], KEYS[8]
  redis.call('HSET', RUN, 'run_slot', slot.pool, 'held_roots', A.roots)
  if redis.call('ZCARD', holders) >= tonumber(slot.limit) or redis.call('LLEN', queue) > 0 then
    redis.call('RPUSH', queue, RUN_ID)
    redis.call('HSET', RUN, 'waiting_for', slot.detail)
    event('run', '', 0, 'pending', 'waiting for ' .. slot.detail)
    return { 'queued' }
  end
  -- A run holds its slot until it finishes: no lease (score: the far future).
  redis.call('ZADD', holders, 9007199254740991, RUN_ID)
end
-- The roots dispatched as dispatch() and index_queued() in common.lua dispatch one step, with the
-- same entries, batched: one command per key for all of them (a run of 1,000 roots made about
-- 6,000 commands, 15-55 ms of Redis time), and an event each, in the roots' order.
local dispatched, outbox, timers = {}, {}, {}
local queued, queued_keys = {}, {}
for _, s in ipairs(split(A.roots, ',')) do
  push(dispatched, dispatch_fields(s, 1))
  push(outbox, outbox_entry(s))
  event('step', s, 1, 'dispatched', '')
  local plan = QUEUED and QUEUED[s]
  if plan then
    local key = KEYS[tonumber(plan.key)]
    if not queued[key] then
      queued[key] = {}
      queued_keys[#queued_keys + 1] = key
    end
    local at, member = queued_entry(s, 1)
    push(queued[key], at, member)
    local due = s2s_due(plan)
    if due then push(timers, due, 'schedule-to-start|' .. member) end
  end
end
call_chunked('HSET', STEPS, {}, dispatched)
call_chunked('ZADD', OUTBOX, {}, outbox)
for _, key in ipairs(queued_keys) do
  call_chunked('ZADD', key, { 'NX' }, queued[key])
  trim_queued(key)
end
call_chunked('ZADD', TIMERS, { 'NX' }, timers)
return { 'created' }
