-- dispatch_attempt.lua: the payload to publish for step ARGV[5].
-- ARGV[7] mode: 'retry' moves the step, retrying as attempt ARGV[6] whose backoff has elapsed, to
--               dispatched; 'unpark' moves the step, parked (waiting) as attempt ARGV[6], to
--               dispatched; 'check' (the sweeper) answers while the step is still dispatched (any
--               attempt: the current one is what must be published), not yet started.
-- ARGV[8] the step's reads, comma-separated.
-- Returns {'stale'} or {'dispatch', run_input, payload (see push_payload)}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, mode = ARGV[5], ARGV[7]
local st = sget(step, 'status')
if mode == 'retry' then
  local attempt = tonumber(ARGV[6])
  if st ~= 'retrying' or tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
  dispatch(step, attempt)
elseif mode == 'unpark' then
  local attempt = tonumber(ARGV[6])
  if st ~= 'waiting' or tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
  sset(step, 'waiting_for', '')
  dispatch(step, attempt)
elseif st ~= 'dispatched' then
  return { 'stale' }
end
local out = { 'dispatch', redis.call('HGET', RUN, 'input') }
push_payload(out, step, ARGV[8])
return out
