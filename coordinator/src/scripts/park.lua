-- park.lua: a step, dispatched as `attempt`, waits (holding no worker) until a timer fires and
-- dispatches it again.
-- A (ARGV[6], store.rs `ParkJson`): step, attempt; detail: why (shown to users); timer: the timer's
-- member; due: when it fires (Unix ms, clamped to LATEST).
-- Returns {'parked'} or {'stale'}.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = A.step, tonumber(A.attempt)
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'dispatched' then return { 'stale' } end
sset(step, 'status', 'waiting', 'waiting_for', A.detail)
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
redis.call('ZADD', TIMERS, math.min(tonumber(A.due), LATEST), A.timer)
event('step', step, attempt, 'waiting', A.detail)
return { 'parked' }
