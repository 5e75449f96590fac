-- start_step.lua: StartStep, one round trip. A worker took an attempt of a step (or fan-out
-- element) off its queue; the coordinator checked that the step runs a handler.
-- KEYS[7] the queued index of the step's handler (keys.rs `queued`): the attempt leaves it, and
--         its schedule-to-start timer goes, whatever the answer (the task has left its queue).
-- KEYS[8] (only when `holder` is given) the liveness key of that holder (keys.rs `worker_alive`).
-- A (ARGV[6], store.rs `StartStepJson`):
--   step, attempt, worker: who took which attempt; pinned: 'workflow@version' the worker was given;
--   slot_lease_ms: the lease of a concurrency slot the attempt holds, from now (ms; absent for none):
--   written as a 'lease_slot' effect (the pool's keys are not the run's);
--   timeout_due: the start-to-close timeout's due time (Unix ms); heartbeat_due: the heartbeat
--   timeout's due time (Unix ms; absent for none); holder: the holder an earlier call answered
--   (absent on a first call); recheck_ms: how long after the holder's liveness key expires its
--   attempt is checked again (ms); input: the input the worker received (JSON text; absent or ''
--   for none), kept as `<step>:input@<attempt>` when the attempt proceeds.
-- Returns {'proceed'}, {'stale'} (not the current attempt, or no longer startable),
-- {'cancelled'} (the run is over), {'held', holder} (another worker started the attempt: call
-- again with its id and liveness key), or {'duplicate'} (that worker is alive and holds the
-- attempt: this copy is to be dropped; a 'held' timer checks the holder again after its liveness
-- key expires and has the attempt sent again if it is gone).
-- Invariants: only the current attempt can be running; a running attempt has one holder, and
-- only the holder's liveness ending (or the same worker starting it again) hands it to another
-- worker; a refused start changes nothing but that timer and the queued index.
local step, attempt, worker = A.step, tonumber(A.attempt), A.worker
local member = RUN_ID .. '|' .. step .. '|' .. tostring(attempt)
redis.call('ZREM', KEYS[7], member)
redis.call('ZREM', TIMERS, 'schedule-to-start|' .. member)
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
if not pinned_to(A.pinned) then return { 'stale' } end
if worker == '' or tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
if st ~= 'dispatched' and st ~= 'running' then return { 'stale' } end
local holder = (st == 'running') and (sget(step, 'worker') or '') or ''
-- Running with no holder: no worker started it (a fan-out step itself, whose elements run).
if st == 'running' and holder == '' then return { 'stale' } end
local taken_over = false
if holder ~= '' and holder ~= worker then
  if A.holder ~= holder then return { 'held', holder } end
  local ttl = redis.call('PTTL', KEYS[8])
  if ttl ~= -2 then
    -- Alive (or, without an expiry, until told otherwise): look again once its liveness lapses.
    local again = (ttl > 0) and ttl or 5000
    redis.call('ZADD', TIMERS, math.min(NOW + again + tonumber(A.recheck_ms), LATEST),
      'held|' .. member)
    return { 'duplicate' }
  end
  taken_over = true
end
sset(step, 'status', 'running', 'started_at', tostring(NOW), 'heartbeat_at', tostring(NOW), 'worker', worker)
if A.input and A.input ~= '' then sset(step, 'input@' .. tostring(attempt), A.input) end
redis.call('ZADD', TIMERS, math.min(tonumber(A.timeout_due), LATEST), 'timeout|' .. member)
if (tonumber(A.heartbeat_due) or 0) > 0 then
  redis.call('ZADD', TIMERS, math.min(tonumber(A.heartbeat_due), LATEST), 'heartbeat|' .. member)
end
-- A concurrency slot's lease now runs to the end of this attempt's timeout (slot_lease_ms) and a
-- margin: an effect, which the pool's holders take only while the attempt still holds the slot.
local pool = sget(step, 'slot')
if pool and pool ~= '' and (tonumber(A.slot_lease_ms) or 0) > 0 then
  effect('{"kind":"lease_slot","pool":' .. cjson.encode(pool) .. ',"member":' .. cjson.encode(member)
    .. ',"until":' .. string.format('%d', math.min(NOW + tonumber(A.slot_lease_ms), LATEST)) .. '}')
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
