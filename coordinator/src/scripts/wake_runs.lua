-- wake_runs.lua: gives the free run slots of a pool (max_concurrent_runs) to the runs queued for
-- them, oldest first, and dispatches their root steps.
-- Not a run script: it touches the pool's keys and those of the queued runs, which the caller read
-- from the head of the queue and declares here.
-- KEYS[1] the pool's holders, KEYS[2] its queue, KEYS[3] the outbox, KEYS[4] the timers; then, for
-- the i-th expected run (i from 1), KEYS[4 + 3i - 2] its run hash, KEYS[4 + 3i - 1] its steps hash
-- and KEYS[4 + 3i] its events stream.
-- ARGV[1] JSON (store::slots::WakeRunsArgs): {"now": Unix ms, "limit": the pool's limit,
-- "outbox_hold_ms": how long after a dispatch its outbox entry comes due, "max_events":
-- approximate most entries of a run's event stream, "pool": the pool, "runs": the run ids the
-- caller read from the head of the queue, in order (at most store::WAKE_BATCH)}.
-- Returns {'woken', run1, run2, ...}: the runs whose roots were dispatched (with their outbox
-- entries).
-- Invariant: never more holders than the limit; a queued run that ended meanwhile (cancelled) is
-- dropped; when the queue's head is not the run the caller read, or more runs could start than
-- were read, a 'run-wake' timer due now goes on with them, so no call touches an undeclared key.
local a = cjson.decode(ARGV[1])
local now, limit = tonumber(a.now), tonumber(a.limit)
local at = string.format('%.0f', now)
local out = { 'woken' }
local i = 0
while redis.call('ZCARD', KEYS[1]) < limit do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head then break end
  local run = a.runs[i + 1]
  if run == nil or head ~= run then
    redis.call('ZADD', KEYS[4], at, 'run-wake|' .. a.pool .. '||0')
    break
  end
  i = i + 1
  redis.call('LPOP', KEYS[2])
  local rkey, steps, events = KEYS[4 + 3 * i - 2], KEYS[4 + 3 * i - 1], KEYS[4 + 3 * i]
  local f = redis.call('HMGET', rkey, 'status', 'held_roots')
  if f[1] == 'pending' then
    redis.call('ZADD', KEYS[1], 9007199254740991, run)
    redis.call('HSET', rkey, 'waiting_for', '')
    for root in string.gmatch(f[2] or '', '[^,]+') do
      redis.call('HSET', steps, root .. ':status', 'dispatched', root .. ':attempt', '1',
        root .. ':dispatched_at', at)
      redis.call('ZADD', KEYS[3], string.format('%.0f', now + tonumber(a.outbox_hold_ms)), run .. '|' .. root)
      redis.call('XADD', events, 'MAXLEN', '~', tostring(a.max_events), '*', 'kind', 'step', 'step', root,
        'attempt', '1', 'status', 'dispatched', 'detail', 'got a run slot', 'at', at)
    end
    out[#out + 1] = run
  end
end
return out
