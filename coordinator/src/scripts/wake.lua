-- wake.lua: hands the free slots of a concurrency pool to its waiters, oldest first.
-- Not a run script: it touches the pool's keys and those of the waiting runs, which the caller
-- read from the head of the waiters list and declares here.
-- KEYS[1] holders, KEYS[2] waiters, KEYS[3] the outbox, KEYS[4] the timers; then, for the i-th
-- expected waiter (i from 1), KEYS[4 + 3i - 2] its run hash, KEYS[4 + 3i - 1] its steps hash and
-- KEYS[4 + 3i] its events stream.
-- ARGV[1] JSON (store::slots::WakeArgs): {"now": Unix ms, "limit": the pool's limit,
-- "lease_until": the lease end of a new holder (Unix ms), "outbox_hold_ms": how long after a
-- dispatch its outbox entry comes due, "max_events": approximate most entries of a run's event
-- stream, "pool": the pool, "waiters": the members ('run|step|attempt') the caller read from the
-- head of the waiters list, in order (at most store::WAKE_BATCH)}.
-- Returns {'woken', run1, step1, attempt1, ...}: the steps now holding a slot and dispatched again
-- (with their outbox entries), for the coordinator to publish.
-- Invariants: never more holders than the limit; a waiter that is no longer waiting (its run ended,
-- it was retried) is dropped, not given a slot; when the list's head is not the waiter the caller
-- read (another wake took it, a run script removed it), or more waiters could get a slot than were
-- read, a 'sem-wake' timer due now goes on with them, so no call touches an undeclared key.
local a = cjson.decode(ARGV[1])
local now, limit = tonumber(a.now), tonumber(a.limit)
local at = string.format('%.0f', now)
local TERMINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = { 'woken' }
local i = 0
while redis.call('ZCARD', KEYS[1]) < limit do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head then break end
  local m = a.waiters[i + 1]
  if m == nil or head ~= m then
    redis.call('ZADD', KEYS[4], at, 'sem-wake|' .. a.pool .. '||0')
    break
  end
  i = i + 1
  redis.call('LPOP', KEYS[2])
  local rkey, steps, events = KEYS[4 + 3 * i - 2], KEYS[4 + 3 * i - 1], KEYS[4 + 3 * i]
  local run, step, attempt = string.match(m, '^([^|]+)|([^|]+)|([^|]+)$')
  if run then
    local f = redis.call('HMGET', steps, step .. ':status', step .. ':attempt')
    local status = redis.call('HGET', rkey, 'status')
    if f[1] == 'waiting' and f[2] == attempt and status and not TERMINAL[status] then
      redis.call('ZADD', KEYS[1], string.format('%.0f', a.lease_until), m)
      redis.call('HSET', steps, step .. ':status', 'dispatched', step .. ':waiting_for', '',
        step .. ':dispatched_at', at)
      redis.call('ZADD', KEYS[3], string.format('%.0f', now + tonumber(a.outbox_hold_ms)), run .. '|' .. step)
      redis.call('XADD', events, 'MAXLEN', '~', tostring(a.max_events), '*',
        'kind', 'step', 'step', step, 'attempt', attempt, 'status', 'dispatched', 'detail', 'got a slot',
        'at', at)
      out[#out + 1] = run
      out[#out + 1] = step
      out[#out + 1] = attempt
    end
  end
end
return out
