-- publish_event.lua: delivers an event to the steps waiting for it, or buffers it.
-- Not a run script: it touches the steps of whichever runs wait, which the caller read from the
-- waiting set first and declares here.
-- KEYS[1] the event's waiting set (members 'run|step|attempt'), KEYS[2] its buffer list,
-- KEYS[3] the timers sorted set, KEYS[4] the index of buffered (name, key) pairs; then KEYS[4 + i]
-- the steps hash of the run of the i-th expected waiter.
-- ARGV[1] JSON (store::events::PublishArgs): {"now": Unix ms, "payload": the event's JSON,
-- "ttl_s": how long an event nobody waits for stays buffered (seconds), "max_buffered": most
-- events kept buffered per name and key, "identity": the event's identity (length-prefixed name
-- and key, see keys.rs), "buffered_member": its member in the index of buffered pairs,
-- "waiters": the members of the waiting set the caller read}.
-- Returns {'again'} when the waiting set holds a member the caller did not read (a step started
-- waiting meanwhile: nothing changes, read and call again), {'buffered'}, or
-- {'delivered', run1, step1, run2, step2, ...}.
-- Invariants: a waiter gets at most one event per attempt (the delivery is stored on its step and
-- completed through an 'event' timer, so a coordinator crash loses nothing); an event nobody waits
-- for is kept for the TTL; every waiter in the set when the event is published is looked at.
local a = cjson.decode(ARGV[1])
local now = string.format('%.0f', a.now)
local expected = {}
for _, m in ipairs(a.waiters) do expected[m] = true end
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not expected[m] then return { 'again' } end
end
local out = { 'delivered' }
for i, m in ipairs(a.waiters) do
  local run, step, attempt = string.match(m, '^([^|]+)|([^|]+)|([^|]+)$')
  if run then
    local steps = KEYS[4 + i]
    local f = redis.call('HMGET', steps, step .. ':status', step .. ':attempt', step .. ':waiting_on', step .. ':delivered')
    if f[1] == 'waiting' and f[2] == attempt and f[3] == a.identity and (not f[4] or f[4] == '') then
      redis.call('HSET', steps, step .. ':delivered', a.payload)
      redis.call('ZADD', KEYS[3], now, 'event|' .. m)
      out[#out + 1] = run
      out[#out + 1] = step
    end
  end
end
redis.call('DEL', KEYS[1])
if #out > 1 then return out end
redis.call('RPUSH', KEYS[2], a.payload)
redis.call('LTRIM', KEYS[2], -tonumber(a.max_buffered), -1)
redis.call('EXPIRE', KEYS[2], tostring(a.ttl_s))
redis.call('ZADD', KEYS[4], now, a.buffered_member)
return { 'buffered' }
