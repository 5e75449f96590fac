-- wait.lua: step ARGV[5], attempt ARGV[6], starts waiting, holding no worker.
-- ARGV[7] mode: 'event' (a wait_for_event step), 'suspend' (a handler suspended itself until an
--         event), 'human' (a human task), 'child' (a workflow step whose child run was created),
--         'sleep' (a sleep or sleep_until step: it waits for its 'wake' timer)
-- ARGV[8] what it waits for, shown to users
-- ARGV[9] for 'event'/'suspend': the event's identity (length-prefixed name and key, see keys.rs);
--         for 'child': the child run id
-- ARGV[10] for 'event'/'suspend'/'human': when the wait times out (Unix ms), or '0'; for 'sleep':
--          when the step wakes (Unix ms). Clamped to LATEST.
-- ARGV[11] for 'suspend': the worker that suspended (it must hold the running attempt)
-- KEYS[6] the event's waiting set, KEYS[7] its buffer (for 'event'/'suspend').
-- Returns {'stale'}, {'waiting'}, or {'delivered'} when a buffered event was taken (the delivery
-- is then completed through an 'event' timer, due now).
-- Invariants: a step waits at most once per attempt; a buffered event goes to exactly one waiter.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt, mode = ARGV[5], tonumber(ARGV[6]), ARGV[7]
if tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
if mode == 'suspend' then
  if st ~= 'running' or ARGV[11] == '' or sget(step, 'worker') ~= ARGV[11] then return { 'stale' } end
  record_attempt(step, attempt, 'suspended', '', ARGV[11])
  release_slot(step, attempt)
elseif st ~= 'dispatched' then
  return { 'stale' }
end
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
sset(step, 'status', 'waiting', 'waiting_for', ARGV[8], 'started_at', tostring(NOW), 'delivered', '')
run_started()
event('step', step, attempt, 'waiting', ARGV[8])
local member = RUN_ID .. '|' .. step .. '|' .. attempt
local due = math.min(tonumber(ARGV[10]) or 0, LATEST)
if mode == 'event' or mode == 'suspend' then
  sset(step, 'waiting_on', ARGV[9])
  local payload = redis.call('LPOP', KEYS[7])
  if payload then
    sset(step, 'delivered', payload)
    redis.call('ZADD', TIMERS, NOW, 'event|' .. member)
    return { 'delivered' }
  end
  redis.call('SADD', KEYS[6], member)
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
  sset(step, 'child_run', ARGV[9])
end
return { 'waiting' }
