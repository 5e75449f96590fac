-- wake.lua: hands the free slots of a concurrency pool to its waiters, oldest first.
-- Not a run script (see acquire.lua). KEYS[1] holders, KEYS[2] waiters, KEYS[3] the outbox,
-- KEYS[4] the timers.
-- ARGV[1] prefix, ARGV[2] now, ARGV[3] limit, ARGV[4] the lease end of a new holder, ARGV[5] the
-- dispatch grace (ms), ARGV[6] max length of a run's event stream, ARGV[7] the most waiters one
-- call looks at (store::WAKE_BATCH): when more could get a slot, a 'sem-wake' timer due now goes
-- on with them, so no call does work in proportion to the queue; ARGV[8] the pool.
-- Returns {run1, step1, attempt1, ...}: the steps now holding a slot and dispatched again (with
-- their outbox entries), for the coordinator to publish.
-- Invariants: never more holders than the limit; a waiter that is no longer waiting (its run ended,
-- it was retried) is dropped, not given a slot.
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local TERMINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {}
local looked, most = 0, tonumber(ARGV[7])
while redis.call('ZCARD', KEYS[1]) < limit do
  if looked >= most then
    if redis.call('LLEN', KEYS[2]) > 0 then
      redis.call('ZADD', KEYS[4], now, 'sem-wake|' .. ARGV[8] .. '||0')
    end
    break
  end
  looked = looked + 1
  local m = redis.call('LPOP', KEYS[2])
  if not m then break end
  local run, step, attempt = string.match(m, '^([^|]+)|([^|]+)|([^|]+)$')
  if run then
    local steps = ARGV[1] .. ':{' .. run .. '}:steps'
    local f = redis.call('HMGET', steps, step .. ':status', step .. ':attempt')
    local status = redis.call('HGET', ARGV[1] .. ':{' .. run .. '}:run', 'status')
    if f[1] == 'waiting' and f[2] == attempt and status and not TERMINAL[status] then
      redis.call('ZADD', KEYS[1], tonumber(ARGV[4]), m)
      redis.call('HSET', steps, step .. ':status', 'dispatched', step .. ':waiting_for', '',
        step .. ':dispatched_at', tostring(now))
      redis.call('ZADD', KEYS[3], now + tonumber(ARGV[5]), run .. '|' .. step)
      redis.call('XADD', ARGV[1] .. ':{' .. run .. '}:events', 'MAXLEN', '~', ARGV[6], '*',
        'kind', 'step', 'step', step, 'attempt', attempt, 'status', 'dispatched', 'detail', 'got a slot',
        'at', tostring(now))
      out[#out + 1] = run
      out[#out + 1] = step
      out[#out + 1] = attempt
    end
  end
end
return out
