-- heartbeat.lua: an attempt is alive, says the worker that sends the heartbeat.
-- A (ARGV[6], store.rs `AttemptJson`): step, attempt, worker.
-- Returns {'proceed'}, {'stale'} (not the current attempt, not running, or held by another
-- worker) or {'cancelled'} (the run is over).
-- Invariant: only the worker holding a running attempt (the one StartStep answered PROCEED) keeps
-- it alive.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
local step, attempt, worker = A.step, tonumber(A.attempt), A.worker
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'running'
  or worker == '' or sget(step, 'worker') ~= worker then
  return { 'stale' }
end
sset(step, 'heartbeat_at', tostring(NOW))
return { 'proceed' }
