-- rate.lua: takes one start from a rate limit (a sliding window) for an attempt.
-- KEYS[1] the window (sorted set of start times, Unix ms; member 'run|step|attempt').
-- ARGV[1] JSON (store::slots::RateArgs): {"now": Unix ms, "period_ms": the window (ms), "limit":
-- starts allowed per period, "member": the attempt, 'run|step|attempt'}.
-- Returns {'ok'} (taken, or taken before by the same attempt) or {'wait', when} (Unix ms at which a
-- start frees up).
-- Invariant: at most `limit` starts in any window of `period_ms`.
-- The period is clamped to the latest due time, 9999-12-31 in Unix ms (Lua numbers are doubles), and
-- due times are written with '%.0f' (tostring would round past 14 digits).
local a = cjson.decode(ARGV[1])
local now, period, limit = tonumber(a.now), math.min(tonumber(a.period_ms), 253402300799999), tonumber(a.limit)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - period))
if redis.call('ZSCORE', KEYS[1], a.member) then return { 'ok' } end
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), a.member)
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(1, math.min(period, 253402300799999 - now))))
  return { 'ok' }
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return { 'wait', string.format('%.0f', math.min(tonumber(oldest[2]) + period, 253402300799999)) }
