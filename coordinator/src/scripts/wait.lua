-- wait.lua: a step starts waiting, holding no worker.
-- A (ARGV[6], store.rs `WaitJson`): step, attempt; mode: 'event' (a wait_for_event step),
--   'suspend' (a handler suspended itself until an event), 'human' (a human task), 'child' (a
--   workflow step whose child run was created), 'sleep' (a sleep or sleep_until step: it waits for
--   its 'wake' timer); detail: what it waits for, shown to users; identity: for 'event'/'suspend'
--   the event's identity (length-prefixed name and key, see keys.rs), for 'child' the child run id;
--   due: for 'event'/'suspend'/'human' when the wait times out (Unix ms), or 0; for 'sleep' when
--   the step wakes (Unix ms); clamped to LATEST; worker: for 'suspend', the worker that suspended
--   (it must hold the running attempt).
-- KEYS[7] the event's waiting set, KEYS[8] its buffer (for 'event'/'suspend').
-- Returns {'stale'}, {'waiting'}, or {'delivered'} when a buffered event was taken (the delivery
-- is then completed through an 'event' timer, due now). A suspended attempt's slot goes back
-- through an effect.
-- Invariants: a step waits at most once per attempt; a buffered event goes to exactly one waiter.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt, mode = A.step, tonumber(A.attempt), A.mode
if tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
if mode == 'suspend' then
  if st ~= 'running' or (A.worker or '') == '' or sget(step, 'worker') ~= A.worker then return { 'stale' } end
  record_attempt(step, attempt, 'suspended', '', A.worker)
  release_slot(step, attempt)
elseif st ~= 'dispatched' then
  return { 'stale' }
end
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
sset(step, 'status', 'waiting', 'waiting_for', A.detail, 'started_at', tostring(NOW), 'delivered', '')
run_started()
event('step', step, attempt, 'waiting', A.detail)
local member = RUN_ID .. '|' .. step .. '|' .. attempt
local due = math.min(tonumber(A.due) or 0, LATEST)
if mode == 'event' or mode == 'suspend' then
  sset(step, 'waiting_on', A.identity)
  local payload = redis.call('LPOP', KEYS[8])
  if payload then
    sset(step, 'delivered', payload)
    redis.call('ZADD', TIMERS, NOW, 'event|' .. member)
    return { 'delivered' }
  end
  redis.call('SADD', KEYS[7], member)
  if due > 0 then
    redis.call('ZADD', TIMERS, due, 'timeout|' .. member)
  end
elseif mode == 'human' then
  sset(step, 'completed_by', '', 'completed_at', '')
  if due > 0 then
    redis.call('ZADD', TIMERS, due, 'timeout|' .. member)
  end
elseif mode == 'sleep' then
  sset(step, 'wake_at', string.format('%.0f', due))
  redis.call('ZADD', TIMERS, due, 'wake|' .. member)
elseif mode == 'child' then
  sset(step, 'child_run', A.identity)
end
return { 'waiting' }
