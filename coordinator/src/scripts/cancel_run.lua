-- cancel_run.lua: ends a run that has not finished. ARGV[5] the reason (the run's error);
-- ARGV[6] the run's new status: 'cancelled' (CancelRun) or 'timed_out' (the run timeout fired).
-- Returns {'cancelled', workflow name}, {'finished', status} or {'missing'}.
-- Invariant: a finished run is never changed; every unfinished step becomes cancelled, so results
-- of attempts still running are answered stale.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'missing' } end
if TERMINAL[status] then return { 'finished', status } end
finish_run(ARGV[6], '', ARGV[5])
return { 'cancelled', redis.call('HGET', RUN, 'workflow') or '' }
