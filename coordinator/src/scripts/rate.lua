-- rate.lua: takes one start from a rate limit (a sliding window), for attempt ARGV[4]
-- ('run|step|attempt'). KEYS[1] the window (sorted set of start times, Unix ms).
-- ARGV[1] now, ARGV[2] period (ms), ARGV[3] starts allowed per period.
-- Returns {'ok'} (taken, or taken before by the same attempt) or {'wait', when} (Unix ms at which a
-- start frees up).
-- Invariant: at most ARGV[3] starts in any window of ARGV[2] ms.
-- The period is clamped to the latest due time, 9999-12-31 in Unix ms (Lua numbers are doubles), and due times are written with
-- '%.0f' (tostring would round past 14 digits).
local now, period, limit = tonumber(ARGV[1]), math.min(tonumber(ARGV[2]), 253402300799999), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) then return { 'ok' } end
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.min(period, 253402300799999 - now)))
  return { 'ok' }
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return { 'wait', string.format('%.0f', math.min(tonumber(oldest[2]) + period, 253402300799999)) }
