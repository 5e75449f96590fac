-- claim.lua: leases due entries of a durable-time sorted set (timers or outbox) to one coordinator.
-- KEYS[1] the sorted set. ARGV[1] now (Unix ms), ARGV[2] lease (ms), ARGV[3] most entries to take.
-- Returns {lease_score, member...}: each member's score is moved to now + lease, so no other
-- coordinator takes it meanwhile, and it comes due again if this one dies before removing it.
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local until_ms = now + lease
local out = { tostring(until_ms) }
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, m)
  out[#out + 1] = m
end
return out
