-- resume.lua: an event arrived for a step suspended at `attempt`: dispatch it again as the next
-- attempt, with the event's payload as its resume data. The retry policy counts from the resumed
-- attempt (a suspension is not a failure).
-- A (ARGV[6], store.rs `StepJson`): step, attempt; graph: (only after {'no_graph'}) as
-- complete_step.lua's. The step's reads come from the stored graph.
-- Returns {'stale'}, {'no_graph'} (nothing changed: call again with `graph`) or
-- {'dispatch', run_input, payload (see push_payload)}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = A.step, tonumber(A.attempt)
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'waiting' then return { 'stale' } end
local payload = sget(step, 'delivered')
if not payload or payload == '' then return { 'stale' } end
if graph_missing() then return { 'no_graph' } end
sset(step, 'resume', payload, 'base', tostring(attempt), 'waiting_for', '', 'waiting_on', '')
dispatch(step, attempt + 1)
local out = { 'dispatch', redis.call('HGET', RUN, 'input') }
push_payload(out, step, reads_of(step))
return out
