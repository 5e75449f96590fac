-- start_step.lua: worker ARGV[7] took attempt ARGV[6] of step ARGV[5] off the queue. The
-- coordinator checked that the step runs a handler (a task step or a fan-out element).
-- ARGV[8] 'workflow@version' the worker was given; ARGV[9] the lease of a concurrency slot the
-- attempt holds, from now (ms); ARGV[10] the start-to-close timeout's due time (Unix ms);
-- ARGV[11] the heartbeat timeout's due time (Unix ms), or '0' for none; ARGV[12] the holder the
-- caller found by an earlier call ('' on a first call); ARGV[13] how long after the holder's
-- liveness key expires its attempt is checked again (ms).
-- KEYS[6] (only when ARGV[12] is given) the liveness key of that holder (keys.rs `worker_alive`).
-- Returns {'proceed'}, {'stale'} (not the current attempt, or no longer startable),
-- {'cancelled'} (the run is over), {'held', holder} (another worker started the attempt: call
-- again with its id and liveness key), or {'duplicate'} (that worker is alive and holds the
-- attempt: this copy is to be dropped; a 'held' timer checks the holder again after its liveness
-- key expires and has the attempt sent again if it is gone).
-- Invariants: only the current attempt can be running; a running attempt has one holder, and
-- only the holder's liveness ending (or the same worker starting it again) hands it to another
-- worker; a refused start changes nothing but that timer.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
if not pinned_to(ARGV[8]) then return { 'stale' } end
local step, attempt, worker = ARGV[5], tonumber(ARGV[6]), ARGV[7]
if worker == '' or tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
if st ~= 'dispatched' and st ~= 'running' then return { 'stale' } end
local holder = (st == 'running') and (sget(step, 'worker') or '') or ''
-- Running with no holder: no worker started it (a fan-out step itself, whose elements run).
if st == 'running' and holder == '' then return { 'stale' } end
local member = RUN_ID .. '|' .. step .. '|' .. ARGV[6]
local taken_over = false
if holder ~= '' and holder ~= worker then
  if ARGV[12] ~= holder then return { 'held', holder } end
  local ttl = redis.call('PTTL', KEYS[6])
  if ttl ~= -2 then
    -- Alive (or, without an expiry, until told otherwise): look again once its liveness lapses.
    local again = (ttl > 0) and ttl or 5000
    redis.call('ZADD', TIMERS, math.min(NOW + again + tonumber(ARGV[13]), LATEST),
      'held|' .. member)
    return { 'duplicate' }
  end
  taken_over = true
end
sset(step, 'status', 'running', 'started_at', tostring(NOW), 'heartbeat_at', tostring(NOW), 'worker', worker)
redis.call('ZADD', TIMERS, math.min(tonumber(ARGV[10]), LATEST), 'timeout|' .. member)
if tonumber(ARGV[11]) > 0 then
  redis.call('ZADD', TIMERS, math.min(tonumber(ARGV[11]), LATEST), 'heartbeat|' .. member)
end
-- A concurrency slot's lease now runs to the end of this attempt's timeout (ARGV[9], ms) and a margin.
local pool = sget(step, 'slot')
if pool and pool ~= '' and tonumber(ARGV[9] or '0') > 0 then
  redis.call('ZADD', PREFIX .. ':sem:' .. pool .. ':holders', 'XX', math.min(NOW + tonumber(ARGV[9]), LATEST),
    RUN_ID .. '|' .. step .. '|' .. attempt)
end
if not string.find(step, '#', 1, true) then
  local detail = worker
  if taken_over then
    detail = 'taken over by ' .. worker .. ' from ' .. holder .. ' (gone)'
  elseif st == 'running' then
    detail = 'redelivered to ' .. worker
  end
  event('step', step, attempt, 'running', detail)
end
run_started()
return { 'proceed' }
