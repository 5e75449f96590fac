-- resume.lua: an event arrived for a step suspended at `attempt`: dispatch it again as the next
-- attempt, with the event's payload as its resume data. The retry policy counts from the resumed
-- attempt (a suspension is not a failure).
-- A (ARGV[6], store.rs `StepJson`): step, attempt, reads (the step's reads, comma-separated).
-- Returns {'stale'} or {'dispatch', run_input, payload (see push_payload)}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = A.step, tonumber(A.attempt)
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'waiting' then return { 'stale' } end
local payload = sget(step, 'delivered')
if not payload or payload == '' then return { 'stale' } end
sset(step, 'resume', payload, 'base', tostring(attempt), 'waiting_for', '', 'waiting_on', '')
dispatch(step, attempt + 1)
local out = { 'dispatch', redis.call('HGET', RUN, 'input') }
push_payload(out, step, A.reads)
return out
