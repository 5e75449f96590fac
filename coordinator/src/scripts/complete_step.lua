-- complete_step.lua: the outcome of an attempt of a step (or of a fan-out element
-- `<step>#<index>`), reported by a worker (ReportResult) or found by the coordinator (a timer, a
-- skip, a human, a child run). One round trip: the fence, the record, the attempt's timers
-- disarmed, a retry armed, and the children that became ready dispatched with their outbox
-- entries, queued-index entries and schedule-to-start timers, all in this one script; the slot
-- the attempt held goes back, and a finished run's run slot and emitting parent are told, through
-- effects (see common.lua) that the caller applies (by 'worker': the attempt's timeout and heartbeat
-- timers are disarmed).
-- KEYS[7..] the queued indexes (keys.rs `queued`) of the handlers named in `queued` below.
-- A (ARGV[6], store.rs `CompleteStepJson`):
--   step, attempt: the attempt; who: the worker id (by 'worker'), the user who completed a human
--     task (by 'human'), or the coordinator's source, e.g. 'timer' (by 'coordinator'); kept in the
--     attempt history;
--   by: the path the outcome came by: 'worker' (ReportResult: outcome 'ok', 'error' or 'emit', for
--     a step the coordinator checked runs a handler), 'human' (CompleteHumanTask: sets
--     completed_by to `who`) or 'coordinator' (everything the coordinator decides itself);
--   outcome: 'ok' | 'skip' | 'error' | 'timeout' (start-to-close, or a wait's timeout) | 'items'
--     (a fan-out step whose elements all succeeded: the body holds their outputs, gathered) |
--     'heartbeat' (heartbeat timeout) | 'emit' (an emitting step's handler succeeded) | 'schedule'
--     (schedule-to-start timeout: counts only while the attempt is still dispatched);
--   retry_at: when to dispatch the next attempt (Unix ms), or 0 (or absent) to fail the step for
--     good (the coordinator decided this from the step's retry policy); a 'retry' timer is armed
--     for it;
--   heartbeat_timeout_ms: for 'heartbeat', the heartbeat timeout (ms; absent otherwise): the
--     attempt is alive if it beat more recently;
--   pinned: 'workflow@version' the coordinator planned with; anything else is answered stale;
--   queued: (absent for none) { child = { key = i, s2s_ms = ms } } for the children that go
--     straight to a worker when dispatched (store.rs `QueuedPlan`): each such dispatch joins KEYS[i] (score now, NX)
--     and, with s2s_ms > 0, gets a schedule-to-start timer (NX); an entry for a fan-out step
--     (sent with the report of one of its elements) does the same for the elements it dispatches;
--   error_type, error_details: for a failure, its type and details (a traceback), kept in the
--     attempt's history ('' for none).
--   graph: (only after a {'no_graph'} answer) the run's graph, stored first (see put_graph).
-- The step's children (with their parents and reads) and the run's leaves are read from the graph
-- create_run.lua stored: they are not sent on every report.
-- ARGV[7] the output JSON ('ok', 'emit', 'items'), the reason ('skip') or the error message.
-- Returns {'stale'}; {'no_graph'} (a run of layout 2 has no stored graph: nothing changed, call
-- again with `graph`); {'alive', last_heartbeat_ms}; {'retry', next_attempt}; {'failed'}; {'emit'};
-- or {'ok', run_status, run_input, n, then per dispatched step a payload (see push_payload)}.
-- Invariants: only the current attempt of a live step counts (fencing); a worker's report counts only
-- for a running attempt that worker started and holds; a child is dispatched exactly once, when its
-- last parent is done; a fan-out step succeeds once, after its last element did, with the elements'
-- outputs in input order; the run finishes when its last step does; no call does work in proportion
-- to a fan-out's element count.
local BODY = ARGV[7]
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] or not pinned_to(A.pinned) then return { 'stale' } end
local step, attempt, worker, outcome = A.step, tonumber(A.attempt), A.who, A.outcome
if tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
local by = A.by
if by == 'worker' then
  -- Not a dispatched attempt no worker started, not a waiting step (no handler runs), not the
  -- attempt of another worker.
  if st ~= 'running' or worker == '' or sget(step, 'worker') ~= worker then return { 'stale' } end
  if outcome ~= 'ok' and outcome ~= 'error' and outcome ~= 'emit' then return { 'stale' } end
elseif by == 'human' then
  if st ~= 'waiting' then return { 'stale' } end
elseif by ~= 'coordinator' then
  return redis.error_reply('complete_step: unknown `by` ' .. tostring(by))
end
if outcome == 'heartbeat' then
  if st ~= 'running' then return { 'stale' } end
elseif outcome == 'timeout' then
  if st ~= 'running' and st ~= 'waiting' then return { 'stale' } end
elseif outcome == 'schedule' then
  if st ~= 'dispatched' then return { 'stale' } end
elseif st ~= 'dispatched' and st ~= 'running' and st ~= 'waiting' then
  return { 'stale' }
end
if outcome == 'heartbeat' then
  local last = tonumber(sget(step, 'heartbeat_at')) or 0
  if NOW - last < (tonumber(A.heartbeat_timeout_ms) or 0) then return { 'alive', tostring(last) } end
end
if graph_missing() then return { 'no_graph' } end
if by == 'worker' then
  -- The attempt is over either way: its timers would only fire as no-ops.
  local member = RUN_ID .. '|' .. step .. '|' .. tostring(attempt)
  redis.call('ZREM', TIMERS, 'timeout|' .. member, 'heartbeat|' .. member)
end
local hash = string.find(step, '#', 1, true)
local parent = hash and string.sub(step, 1, hash - 1)
-- The attempt is over, whatever its outcome: its concurrency slot goes to the next waiter.
release_slot(step, attempt)

if outcome == 'items' then
  -- The coordinator gathered the outputs of a fan-out step whose elements all succeeded.
  if hash or tonumber(sget(step, 'items_ok')) ~= tonumber(sget(step, 'items_total')) then return { 'stale' } end
  sset(step, 'waiting_for', '')
  -- The fan-out step's own attempt (its elements keep theirs).
  record_attempt(step, attempt, 'succeeded', '', '')
  return step_done(step, attempt, 'succeeded', BODY, sget(step, 'items_total') .. ' elements')
end

if outcome == 'ok' and parent then
  -- A fan-out element: record it, start the next elements, and after the last one let the
  -- coordinator gather the outputs (items_done).
  record_attempt(step, attempt, 'succeeded', '', worker)
  sset(step, 'status', 'succeeded', 'output', BODY, 'finished_at', tostring(NOW))
  local ok = redis.call('HINCRBY', STEPS, parent .. ':items_ok', 1)
  local out = { 'ok', status, '', '0' }
  out[4] = tostring(dispatch_items(out, parent, 2))
  if ok >= tonumber(sget(parent, 'items_total')) then
    items_done(parent, sget(parent, 'attempt'))
  end
  return out
end

if outcome == 'ok' then
  if by == 'human' then
    record_attempt(step, attempt, 'succeeded', '', 'human:' .. worker)
    sset(step, 'completed_by', worker, 'completed_at', tostring(NOW))
  else
    record_attempt(step, attempt, 'succeeded', '', worker)
  end
  return step_done(step, attempt, 'succeeded', BODY, '')
end
if outcome == 'skip' then
  return step_done(step, attempt, 'skipped', 'null', BODY)
end
if outcome == 'emit' then
  -- An emitting step's handler succeeded: keep its output; the step waits while the coordinator
  -- starts (and, if asked, waits for) its child runs, then completes it with 'ok'.
  sset(step, 'status', 'waiting', 'emit_output', BODY, 'worker', worker, 'emit_planned', '',
    'waiting_for', 'starting the runs it emits')
  event('step', step, attempt, 'waiting', 'handler done; starting the runs it emits')
  redis.call('ZADD', TIMERS, NOW, 'emit|' .. RUN_ID .. '|' .. step .. '|' .. attempt)
  return { 'emit' }
end

local word = (outcome == 'error') and 'failed' or 'timed_out'
local message = BODY
record_attempt(step, attempt, word, message, worker, nil, { error_type = A.error_type, error_details = A.error_details })
local retry_at = tonumber(A.retry_at) or 0
if retry_at > 0 then
  sset(step, 'status', 'retrying', 'attempt', tostring(attempt + 1), 'error', message,
    'retry_at', string.format('%d', retry_at))
  redis.call('ZADD', TIMERS, math.min(retry_at, LATEST), 'retry|' .. RUN_ID .. '|' .. step .. '|' .. tostring(attempt + 1))
  event('step', step, attempt, 'retrying', message)
  return { 'retry', tostring(attempt + 1) }
end
if parent then
  sset(step, 'status', 'failed', 'error', message, 'finished_at', tostring(NOW))
  redis.call('HINCRBY', STEPS, parent .. ':items_failed', 1)
  local index = string.sub(step, hash + 1)
  local parent_attempt = tonumber(sget(parent, 'attempt'))
  local why = 'element ' .. index .. ' failed after ' .. attempt .. ' attempt(s): ' .. message
  record_attempt(parent, parent_attempt, 'failed', why, '')
  return step_failed(parent, parent_attempt, why)
end
return step_failed(step, attempt, message)
