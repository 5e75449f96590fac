-- acquire.lua: a dispatched attempt asks for a slot of a concurrency pool.
-- Not a run script: it touches the pool's keys and the run's.
-- KEYS[1] the pool's holders (sorted set, member 'run|step|attempt', score: lease end, Unix ms),
-- KEYS[2] its waiters (list, FIFO), KEYS[3] the outbox, KEYS[4] the timers, KEYS[5] the pool's
-- remembered limit ({<ns>}:sem:<pool>:limit), KEYS[6] the run's steps hash, KEYS[7] the run's events.
-- ARGV[1] JSON (store::slots::AcquireArgs): {"now": Unix ms, "limit": the pool's limit, "run",
-- "step", "attempt" (a string): the attempt, "lease_until": its lease end if acquired (Unix ms),
-- "pool": the pool's name, "detail": what the step waits for (shown to users), "max_events":
-- approximate most entries of the run's event stream}.
-- Returns {'acquired'}, {'held'} (already its slot), {'queued'} (the step now waits, holding no
-- worker, until a slot frees and wake.lua dispatches it) or {'stale'}.
-- Invariants: never more holders than the limit (expired leases are dropped first); waiters get
-- slots in arrival order (a newcomer queues behind waiters even when a slot is free).
local a = cjson.decode(ARGV[1])
local now, limit = tonumber(a.now), tonumber(a.limit)
local step, attempt = a.step, a.attempt
local member = a.run .. '|' .. step .. '|' .. attempt
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- The pool remembers its limit, so waiters are woken with it whatever versions come later.
redis.call('SET', KEYS[5], tostring(limit))
if redis.call('ZSCORE', KEYS[1], member) then return { 'held' } end
local f = redis.call('HMGET', KEYS[6], step .. ':status', step .. ':attempt')
if f[1] ~= 'dispatched' or f[2] ~= attempt then return { 'stale' } end
local free = redis.call('ZCARD', KEYS[1]) < limit
if free and not redis.call('LINDEX', KEYS[2], 0) then
  redis.call('ZADD', KEYS[1], string.format('%.0f', a.lease_until), member)
  redis.call('HSET', KEYS[6], step .. ':slot', a.pool)
  return { 'acquired' }
end
if not redis.call('LPOS', KEYS[2], member) then redis.call('RPUSH', KEYS[2], member) end
redis.call('HSET', KEYS[6], step .. ':status', 'waiting', step .. ':waiting_for', a.detail, step .. ':slot', a.pool)
redis.call('ZREM', KEYS[3], a.run .. '|' .. step)
redis.call('XADD', KEYS[7], 'MAXLEN', '~', tostring(a.max_events), '*',
  'kind', 'step', 'step', step, 'attempt', attempt, 'status', 'waiting', 'detail', a.detail,
  'at', string.format('%.0f', now))
-- A free slot with waiters ahead: make sure a wake comes.
if free then redis.call('ZADD', KEYS[4], string.format('%.0f', now), 'sem-wake|' .. a.pool .. '||0') end
return { 'queued' }
