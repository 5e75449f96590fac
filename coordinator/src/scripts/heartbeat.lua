-- heartbeat.lua: attempt ARGV[6] of step ARGV[5] is alive, says worker ARGV[7].
-- Returns {'proceed'}, {'stale'} (not the current attempt, not running, or held by another
-- worker) or {'cancelled'} (the run is over).
-- Invariant: only the worker holding a running attempt (the one StartStep answered PROCEED) keeps
-- it alive.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
local step, attempt, worker = ARGV[5], tonumber(ARGV[6]), ARGV[7]
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'running'
  or worker == '' or sget(step, 'worker') ~= worker then
  return { 'stale' }
end
sset(step, 'heartbeat_at', tostring(NOW))
return { 'proceed' }
