-- renew.lua: moves a claim's lease forward (or gives the claim back) for the entries still held.
-- KEYS[1] the sorted set (timers, outbox or schedule-due).
-- ARGV[1] JSON (store::claims::RenewArgs): {"held": the lease score the entries were claimed or
-- last renewed with, "until_ms": the new score (a later lease, or now to give them back),
-- "members": [member...]}.
-- Returns {'renewed', n}: how many entries were moved.
-- Invariant: an entry whose score is not `held` is not ours any more (handled and removed,
-- rescheduled by its handler, or claimed by another coordinator after our lease lapsed) and is left
-- alone.
local a = cjson.decode(ARGV[1])
local old, new = tonumber(a.held), string.format('%.0f', a.until_ms)
local n = 0
for _, m in ipairs(a.members) do
  local score = redis.call('ZSCORE', KEYS[1], m)
  if score and tonumber(score) == old then
    redis.call('ZADD', KEYS[1], 'XX', new, m)
    n = n + 1
  end
end
return { 'renewed', tostring(n) }
