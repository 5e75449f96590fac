-- dispatch_attempt.lua: the payload to publish for attempt ARGV[5] of step ARGV[4].
-- ARGV[6] mode: 'retry' moves a retrying step whose backoff has elapsed to dispatched;
--               'check' (the sweeper) only answers while the step is still dispatched, not started.
-- ARGV[7] the step's parents, comma-separated.
-- Returns {'stale'} or {'dispatch', run_input, step, parent count, (parent, output)...}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt, mode = ARGV[4], tonumber(ARGV[5]), ARGV[6]
if tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
if mode == 'retry' then
  if st ~= 'retrying' then return { 'stale' } end
  dispatch(step, attempt)
elseif st ~= 'dispatched' then
  return { 'stale' }
end
local out = { 'dispatch', redis.call('HGET', RUN, 'input') }
push_payload(out, step, ARGV[7])
return out
