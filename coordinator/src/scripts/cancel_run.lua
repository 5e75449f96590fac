-- cancel_run.lua: cancels a run that has not finished. ARGV[4] the reason.
-- Returns {'cancelled'}, {'finished', status} or {'missing'}.
-- Invariant: a finished run is never changed by a cancel; every unfinished step becomes cancelled, so
-- results of attempts still running are answered stale.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'missing' } end
if TERMINAL[status] then return { 'finished', status } end
finish_run('cancelled', '', ARGV[4])
return { 'cancelled' }
