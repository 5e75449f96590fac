-- claim.lua: leases due entries of a durable-time sorted set (timers, outbox or schedule-due) to
-- one coordinator.
-- KEYS[1] the sorted set.
-- ARGV[1] JSON (store::claims::ClaimArgs): {"now": Unix ms, "lease_ms": the lease (ms), "limit":
-- most entries to take}.
-- Returns {'claimed', lease_score, member...}: each member's score is moved to now + lease, so no
-- other coordinator takes it meanwhile, and it comes due again if this one dies before removing it.
-- Invariant: an entry is leased to one claim at a time.
local a = cjson.decode(ARGV[1])
local now = tonumber(a.now)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(a.limit))
local until_ms = now + tonumber(a.lease_ms)
local out = { 'claimed', string.format('%.0f', until_ms) }
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', until_ms, m)
  out[#out + 1] = m
end
return out
