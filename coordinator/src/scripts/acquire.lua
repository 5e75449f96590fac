-- acquire.lua: attempt ARGV[6] of step ARGV[5] of run ARGV[4], dispatched, asks for a slot of a
-- concurrency pool (limit ARGV[3]).
-- Not a run script: it touches the pool's keys and the run's (built from the prefix ARGV[1]).
-- KEYS[1] the pool's holders (sorted set, member 'run|step|attempt', score: lease end, Unix ms),
-- KEYS[2] its waiters (list, FIFO), KEYS[3] the outbox, KEYS[4] the timers.
-- ARGV[2] now, ARGV[7] the lease end if acquired, ARGV[8] the pool's name, ARGV[9] what the step
-- waits for (shown to users), ARGV[10] max length of the run's event stream.
-- Returns {'acquired'}, {'held'} (already its slot), {'queued'} (the step now waits, holding no
-- worker, until a slot frees and wake.lua dispatches it) or {'stale'}.
-- Invariants: never more holders than the limit (expired leases are dropped first); waiters get
-- slots in arrival order (a newcomer queues behind waiters even when a slot is free).
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local run, step, attempt = ARGV[4], ARGV[5], ARGV[6]
local member = run .. '|' .. step .. '|' .. attempt
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- The pool remembers its limit, so waiters are woken with it whatever versions come later.
redis.call('SET', ARGV[1] .. ':sem:' .. ARGV[8] .. ':limit', ARGV[3])
if redis.call('ZSCORE', KEYS[1], member) then return { 'held' } end
local steps = ARGV[1] .. ':{' .. run .. '}:steps'
local f = redis.call('HMGET', steps, step .. ':status', step .. ':attempt')
if f[1] ~= 'dispatched' or f[2] ~= attempt then return { 'stale' } end
local free = redis.call('ZCARD', KEYS[1]) < limit
if free and not redis.call('LINDEX', KEYS[2], 0) then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[7]), member)
  redis.call('HSET', steps, step .. ':slot', ARGV[8])
  return { 'acquired' }
end
if not redis.call('LPOS', KEYS[2], member) then redis.call('RPUSH', KEYS[2], member) end
redis.call('HSET', steps, step .. ':status', 'waiting', step .. ':waiting_for', ARGV[9], step .. ':slot', ARGV[8])
redis.call('ZREM', KEYS[3], run .. '|' .. step)
redis.call('XADD', ARGV[1] .. ':{' .. run .. '}:events', 'MAXLEN', '~', ARGV[10], '*',
  'kind', 'step', 'step', step, 'attempt', attempt, 'status', 'waiting', 'detail', ARGV[9], 'at', tostring(now))
-- A free slot with waiters ahead: make sure a wake comes.
if free then redis.call('ZADD', KEYS[4], now, 'sem-wake|' .. ARGV[8] .. '||0') end
return { 'queued' }
