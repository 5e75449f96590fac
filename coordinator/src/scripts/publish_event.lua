-- publish_event.lua: delivers an event to the steps waiting for it, or buffers it.
-- Not a run script: it touches the steps of whichever runs wait (their keys are built from the
-- prefix, so this script assumes a single Redis, not a cluster).
-- KEYS[1] the event's waiting set (members 'run|step|attempt'), KEYS[2] its buffer list,
-- KEYS[3] the timers sorted set, KEYS[4] the index of buffered (name, key) pairs.
-- ARGV[1] key prefix, ARGV[2] now (Unix ms), ARGV[3] payload JSON, ARGV[4] buffer TTL (seconds),
-- ARGV[5] the most events kept buffered per name and key, ARGV[6] the event's identity
-- (length-prefixed name and key, see keys.rs), ARGV[7] its member in the index of buffered pairs.
-- Returns {'buffered'} or {'delivered', run1, step1, run2, step2, ...}.
-- Invariants: a waiter gets at most one event per attempt (the delivery is stored on its step and
-- completed through an 'event' timer, so a coordinator crash loses nothing); an event nobody waits
-- for is kept for the TTL.
local now = tonumber(ARGV[2])
local out = { 'delivered' }
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local run, step, attempt = string.match(m, '^([^|]+)|([^|]+)|([^|]+)$')
  if run then
    local steps = ARGV[1] .. ':{' .. run .. '}:steps'
    local f = redis.call('HMGET', steps, step .. ':status', step .. ':attempt', step .. ':waiting_on', step .. ':delivered')
    if f[1] == 'waiting' and f[2] == attempt and f[3] == ARGV[6] and (not f[4] or f[4] == '') then
      redis.call('HSET', steps, step .. ':delivered', ARGV[3])
      redis.call('ZADD', KEYS[3], now, 'event|' .. m)
      out[#out + 1] = run
      out[#out + 1] = step
    end
  end
end
redis.call('DEL', KEYS[1])
if #out > 1 then return out end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[4], now, ARGV[7])
return { 'buffered' }
