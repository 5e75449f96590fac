-- reset_steps.lua: runs part of a finished run again (RetryRun, RerunRun).
-- A (ARGV[6], store.rs `ResetStepsJson`): mode: 'retry' resets every failed or cancelled step,
-- 'rerun' resets the steps of `steps` (comma-separated); graph: (only after {'no_graph'}) as
-- complete_step.lua's. Which steps are ready is read from the stored graph.
-- ARGV[7] a new run input (JSON), or '' to keep the old one.
-- Returns {'missing'}; {'not_finished', status}; {'no_graph'} (nothing changed: call again with
-- `graph`); {'nothing'} (retry of a run with no failed step);
-- or {'ok', run_input, n, then n payloads (see push_payload)}.
-- Invariants: only a finished run is reset; succeeded steps outside the reset keep their outputs;
-- attempt numbers go on from where they were, so stale results stay stale; each reset step records
-- its attempt count as its base, so its retry policy starts afresh; a reset step keeps no time,
-- worker or completion of its last round (only its attempt history).
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'missing' } end
if not TERMINAL[status] then return { 'not_finished', status } end
if graph_missing() then return { 'no_graph' } end
local mode = A.mode
local reset = {}
if mode == 'retry' then
  for _, s in ipairs(split(redis.call('HGET', RUN, 'step_ids'), ',')) do
    local st = sget(s, 'status')
    if st == 'failed' or st == 'cancelled' then reset[#reset + 1] = s end
  end
  if #reset == 0 then return { 'nothing' } end
else
  reset = split(A.steps, ',')
end
for _, s in ipairs(reset) do
  if mode == 'rerun' and sget(s, 'items_total') then
    -- A re-run runs a fan-out's elements again; a retry keeps the ones that succeeded. The flag
    -- tells stage_items.lua (one batch per call) rather than touching every element here.
    sset(s, 'items_fresh', '1')
  end
  -- Nothing of the last round stays: no times (so no duration), no worker, no human who completed it.
  sset(s, 'status', 'pending', 'output', '', 'error', '', 'finished_at', '', 'retry_at', '',
    'base', sget(s, 'attempt') or '0', 'resume', '', 'delivered', '', 'waiting_for', '', 'child_run', '',
    'started_at', '', 'dispatched_at', '', 'heartbeat_at', '', 'worker', '', 'completed_by', '',
    'completed_at', '', 'wake_at', '')
end
if ARGV[7] ~= '' then redis.call('HSET', RUN, 'input', ARGV[7]) end
local left = 0
for _, s in ipairs(split(redis.call('HGET', RUN, 'step_ids'), ',')) do
  if not DONE[sget(s, 'status')] then left = left + 1 end
end
redis.call('HSET', RUN, 'status', 'running', 'finished_at', '', 'error', '', 'output', '', 'steps_left', tostring(left))
redis.call('PERSIST', RUN)
redis.call('PERSIST', STEPS)
redis.call('PERSIST', EVENTS)
event('run', '', 0, 'running', mode == 'retry' and 'retried' or 'rerun')
local out = { 'ok', redis.call('HGET', RUN, 'input'), '0' }
local n = dispatch_ready(out, all_steps_spec())
out[3] = tostring(n)
return out
