-- resume.lua: an event arrived for step ARGV[5], suspended at attempt ARGV[6]: dispatch it again as
-- the next attempt, with the event's payload as its resume data. The retry policy counts from the
-- resumed attempt (a suspension is not a failure).
-- ARGV[7] the step's reads (comma-separated).
-- Returns {'stale'} or {'dispatch', run_input, payload (see push_payload)}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = ARGV[5], tonumber(ARGV[6])
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'waiting' then return { 'stale' } end
local payload = sget(step, 'delivered')
if not payload or payload == '' then return { 'stale' } end
sset(step, 'resume', payload, 'base', tostring(attempt), 'waiting_for', '', 'waiting_on', '')
dispatch(step, attempt + 1)
local out = { 'dispatch', redis.call('HGET', RUN, 'input') }
push_payload(out, step, ARGV[7])
return out
