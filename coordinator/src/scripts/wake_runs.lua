-- wake_runs.lua: gives the free run slots of a pool (max_concurrent_runs) to the runs queued for
-- them, oldest first, and dispatches their root steps.
-- Not a run script: it touches the pool's keys and the queued runs' (built from the prefix).
-- KEYS[1] the pool's holders, KEYS[2] its queue, KEYS[3] the outbox, KEYS[4] the timers.
-- ARGV[1] prefix, ARGV[2] now, ARGV[3] limit, ARGV[4] dispatch grace (ms), ARGV[5] max length of a
-- run's event stream, ARGV[6] the pool, ARGV[7] the most queued runs one call looks at
-- (store::WAKE_BATCH): when more could start, a 'run-wake' timer due now goes on with them.
-- Returns {run1, run2, ...}: the runs whose roots were dispatched (with their outbox entries).
-- Invariant: never more holders than the limit; a queued run that ended meanwhile (cancelled) is
-- dropped.
local now, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
local looked, most = 0, tonumber(ARGV[7])
while redis.call('ZCARD', KEYS[1]) < limit do
  if looked >= most then
    if redis.call('LLEN', KEYS[2]) > 0 then
      redis.call('ZADD', KEYS[4], now, 'run-wake|' .. ARGV[6] .. '||0')
    end
    break
  end
  looked = looked + 1
  local run = redis.call('LPOP', KEYS[2])
  if not run then break end
  local rkey = ARGV[1] .. ':{' .. run .. '}:run'
  local f = redis.call('HMGET', rkey, 'status', 'held_roots')
  if f[1] == 'pending' then
    redis.call('ZADD', KEYS[1], 9007199254740991, run)
    redis.call('HSET', rkey, 'waiting_for', '')
    local steps = ARGV[1] .. ':{' .. run .. '}:steps'
    local events = ARGV[1] .. ':{' .. run .. '}:events'
    for root in string.gmatch(f[2] or '', '[^,]+') do
      redis.call('HSET', steps, root .. ':status', 'dispatched', root .. ':attempt', '1',
        root .. ':dispatched_at', tostring(now))
      redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), run .. '|' .. root)
      redis.call('XADD', events, 'MAXLEN', '~', ARGV[5], '*', 'kind', 'step', 'step', root, 'attempt', '1',
        'status', 'dispatched', 'detail', 'got a run slot', 'at', tostring(now))
    end
    out[#out + 1] = run
  end
end
return out
