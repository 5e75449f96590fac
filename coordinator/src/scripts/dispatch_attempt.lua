-- dispatch_attempt.lua: the payload to publish for a step.
-- A (ARGV[6], store.rs `DispatchAttemptJson`): step; attempt; graph: (only after {'no_graph'})
-- as complete_step.lua's; mode: 'retry' moves the step, retrying as `attempt` whose backoff has elapsed,
-- to dispatched; 'unpark' moves the step, parked (waiting) as `attempt`, to dispatched; 'check'
-- (the sweeper) answers while the step is still dispatched (any attempt: the current one is what
-- must be published), not yet started.
-- The step's reads (whose statuses and outputs the payload carries) come from the stored graph.
-- Returns {'stale'}, {'no_graph'} (nothing changed: call again with `graph`) or
-- {'dispatch', run_input, payload (see push_payload)}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, mode = A.step, A.mode
if graph_missing() then return { 'no_graph' } end
local st = sget(step, 'status')
if mode == 'retry' then
  local attempt = tonumber(A.attempt)
  if st ~= 'retrying' or tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
  dispatch(step, attempt)
elseif mode == 'unpark' then
  local attempt = tonumber(A.attempt)
  if st ~= 'waiting' or tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
  sset(step, 'waiting_for', '')
  dispatch(step, attempt)
elseif mode ~= 'check' then
  return redis.error_reply('dispatch_attempt: unknown mode ' .. tostring(mode))
elseif st ~= 'dispatched' then
  return { 'stale' }
end
local out = { 'dispatch', redis.call('HGET', RUN, 'input') }
push_payload(out, step, reads_of(step))
return out
