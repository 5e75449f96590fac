-- cancel_run.lua: ends a run that has not finished.
-- A (ARGV[6], store.rs `CancelRunJson`): reason (the run's error); status: the run's new status,
-- 'cancelled' (CancelRun) or 'timed_out' (the run timeout fired).
-- Returns {'cancelled', workflow name}, {'finished', status} or {'missing'}.
-- Invariant: a finished run is never changed; every unfinished step becomes cancelled, so results
-- of attempts still running are answered stale; the slots its steps and the run held go back, and
-- an emitting parent is told, through effects.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'missing' } end
if TERMINAL[status] then return { 'finished', status } end
finish_run(A.status, '', A.reason)
return { 'cancelled', redis.call('HGET', RUN, 'workflow') or '' }
