-- start_step.lua: a worker took attempt ARGV[6] of step ARGV[5] off the queue (worker id ARGV[7]);
-- ARGV[8] 'workflow@version' the worker was given; ARGV[9] the lease of a concurrency slot the attempt
-- holds, from now (ms).
-- Returns {'proceed'}, {'stale'} (not the current attempt, or already finished) or {'cancelled'}
-- (the run is over). A redelivery of the current attempt (the first worker died) proceeds again.
-- Invariant: only the current attempt can be running.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
if not pinned_to(ARGV[8]) then return { 'stale' } end
local step, attempt = ARGV[5], tonumber(ARGV[6])
if tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
if st ~= 'dispatched' and st ~= 'running' then return { 'stale' } end
sset(step, 'status', 'running', 'started_at', tostring(NOW), 'heartbeat_at', tostring(NOW), 'worker', ARGV[7])
-- A concurrency slot's lease now runs to the end of this attempt's timeout (ARGV[9], ms) and a margin.
local pool = sget(step, 'slot')
if pool and pool ~= '' and tonumber(ARGV[9] or '0') > 0 then
  redis.call('ZADD', PREFIX .. ':sem:' .. pool .. ':holders', 'XX', math.min(NOW + tonumber(ARGV[9]), LATEST),
    RUN_ID .. '|' .. step .. '|' .. attempt)
end
if not string.find(step, '#', 1, true) then
  event('step', step, attempt, 'running', st == 'running' and ('redelivered to ' .. ARGV[7]) or ARGV[7])
end
run_started()
return { 'proceed' }
