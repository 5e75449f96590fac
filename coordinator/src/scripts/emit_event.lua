-- emit_event.lua: a custom event from an attempt of a step.
-- A (ARGV[6], store.rs `AttemptJson`): step, attempt, worker (the worker that sends it; '' from
-- workers older than EmitEventRequest.worker_id: then the holder is not checked).
-- ARGV[7] the event's JSON payload (beside A, so it is not escaped twice).
-- Returns {'proceed'}, {'stale'} or {'cancelled'}: only the current, running attempt may emit, and
-- only from the worker holding it.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
local step, attempt, worker = A.step, tonumber(A.attempt), A.worker or ''
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'running' then return { 'stale' } end
local holder = sget(step, 'worker') or ''
if holder == '' or (worker ~= '' and holder ~= worker) then return { 'stale' } end
redis.call('XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*', 'kind', 'custom', 'step', step, 'attempt', tostring(attempt),
  'status', '', 'detail', '', 'payload', ARGV[7], 'at', tostring(NOW))
return { 'proceed' }
