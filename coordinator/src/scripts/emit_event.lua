-- emit_event.lua: a custom event from attempt ARGV[6] of step ARGV[5]; ARGV[7] its JSON payload;
-- ARGV[8] the worker that sends it ('' from workers older than EmitEventRequest.worker_id: then
-- the holder is not checked).
-- Returns {'proceed'}, {'stale'} or {'cancelled'}: only the current, running attempt may emit, and
-- only from the worker holding it.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
local step, attempt, worker = ARGV[5], tonumber(ARGV[6]), ARGV[8]
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'running' then return { 'stale' } end
local holder = sget(step, 'worker') or ''
if holder == '' or (worker ~= '' and holder ~= worker) then return { 'stale' } end
redis.call('XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*', 'kind', 'custom', 'step', step, 'attempt', tostring(attempt),
  'status', '', 'detail', '', 'payload', ARGV[7], 'at', tostring(NOW))
return { 'proceed' }
