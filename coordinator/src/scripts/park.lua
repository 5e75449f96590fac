-- park.lua: step ARGV[5], dispatched as attempt ARGV[6], waits (holding no worker) until timer
-- ARGV[8] fires at ARGV[9] (Unix ms) and dispatches it again; ARGV[7] says why (shown to users).
-- Returns {'parked'} or {'stale'}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = ARGV[5], tonumber(ARGV[6])
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'dispatched' then return { 'stale' } end
sset(step, 'status', 'waiting', 'waiting_for', ARGV[7])
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
redis.call('ZADD', TIMERS, tonumber(ARGV[9]), ARGV[8])
event('step', step, attempt, 'waiting', ARGV[7])
return { 'parked' }
