-- complete_step.lua: the outcome of attempt ARGV[6] of step ARGV[5] (or of a fan-out element
-- `<step>#<index>`), reported by worker ARGV[7] or found by the coordinator (a timer, a skip, a
-- human, a child run).
-- ARGV[7] who: the worker id (ARGV[16] 'worker'), the user who completed a human task ('human'),
--         or the coordinator's source, e.g. 'timer' ('coordinator'); kept in the attempt history
-- ARGV[8] outcome: 'ok' | 'skip' | 'error' | 'timeout' (start-to-close, or a wait's timeout) |
--         'items' (a fan-out step whose elements all succeeded: ARGV[9] their outputs, gathered) |
--         'heartbeat' (heartbeat timeout) | 'emit' (an emitting step's handler succeeded) |
--         'schedule' (schedule-to-start timeout: counts only while the attempt is still dispatched)
-- ARGV[9] the output JSON ('ok'), the reason ('skip') or the error message
-- ARGV[10] when to dispatch the next attempt (Unix ms), or '0' to fail the step for good
--          (the coordinator decided this from the step's retry policy before calling)
-- ARGV[11] for 'heartbeat': the heartbeat timeout (ms); the attempt is alive if it beat more recently
-- ARGV[12] children of the step with their parents and reads: 'c1=p1,p2=r1;c2=p1'
-- ARGV[13] the workflow's leaf steps, comma-separated (their outputs make the run output)
-- ARGV[14] 'workflow@version' the coordinator planned with; anything else is answered stale
-- ARGV[15] the largest output allowed (bytes; the coordinator checks a fan-out's gathered outputs)
-- ARGV[16] the path the outcome came by: 'worker' (ReportResult: outcome 'ok', 'error' or 'emit',
--          for a step the coordinator checked runs a handler), 'human' (CompleteHumanTask: sets
--          completed_by to ARGV[7]) or 'coordinator' (everything the coordinator decides itself)
-- Returns {'stale'}; {'alive', last_heartbeat_ms}; {'retry', next_attempt}; {'failed'}; {'emit'};
-- or {'ok', run_status, run_input, n, then per dispatched step a payload (see push_payload)}.
-- Invariants: only the current attempt of a live step counts (fencing); a worker's report counts only
-- for a running attempt that worker started and holds; a child is dispatched exactly once, when its
-- last parent is done; a fan-out step succeeds once, after its last element did, with the elements'
-- outputs in input order; the run finishes when its last step does; no call does work in proportion
-- to a fan-out's element count.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] or not pinned_to(ARGV[14]) then return { 'stale' } end
local step, attempt, worker, outcome = ARGV[5], tonumber(ARGV[6]), ARGV[7], ARGV[8]
if tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
local by = ARGV[16]
if by == 'worker' then
  -- Not a dispatched attempt no worker started, not a waiting step (no handler runs), not the
  -- attempt of another worker.
  if st ~= 'running' or worker == '' or sget(step, 'worker') ~= worker then return { 'stale' } end
  if outcome ~= 'ok' and outcome ~= 'error' and outcome ~= 'emit' then return { 'stale' } end
elseif by == 'human' then
  if st ~= 'waiting' then return { 'stale' } end
elseif by ~= 'coordinator' then
  return redis.error_reply('complete_step: unknown ARGV[16] ' .. tostring(by))
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
  if NOW - last < tonumber(ARGV[11]) then return { 'alive', tostring(last) } end
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
  return step_done(step, attempt, 'succeeded', ARGV[9], sget(step, 'items_total') .. ' elements', ARGV[12], ARGV[13])
end

if outcome == 'ok' and parent then
  -- A fan-out element: record it, start the next elements, and after the last one let the
  -- coordinator gather the outputs (items_done).
  record_attempt(step, attempt, 'succeeded', '', worker)
  sset(step, 'status', 'succeeded', 'output', ARGV[9], 'finished_at', tostring(NOW))
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
  return step_done(step, attempt, 'succeeded', ARGV[9], '', ARGV[12], ARGV[13])
end
if outcome == 'skip' then
  return step_done(step, attempt, 'skipped', 'null', ARGV[9], ARGV[12], ARGV[13])
end
if outcome == 'emit' then
  -- An emitting step's handler succeeded: keep its output; the step waits while the coordinator
  -- starts (and, if asked, waits for) its child runs, then completes it with 'ok'.
  sset(step, 'status', 'waiting', 'emit_output', ARGV[9], 'worker', worker, 'emit_planned', '',
    'waiting_for', 'starting the runs it emits')
  event('step', step, attempt, 'waiting', 'handler done; starting the runs it emits')
  redis.call('ZADD', TIMERS, NOW, 'emit|' .. RUN_ID .. '|' .. step .. '|' .. attempt)
  return { 'emit' }
end

local word = (outcome == 'error') and 'failed' or 'timed_out'
local message = ARGV[9]
record_attempt(step, attempt, word, message, worker)
local retry_at = tonumber(ARGV[10])
if retry_at > 0 then
  sset(step, 'status', 'retrying', 'attempt', tostring(attempt + 1), 'error', message,
    'retry_at', ARGV[10])
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
