-- archiver_lease.lua: takes, renews or drops the namespace's archiver lease, so that one
-- coordinator at a time works the archive outbox (archiver.rs).
-- KEYS[1] the lease (keys.rs `archiver_lease`): a string holding the holder's token, expiring.
-- ARGV[1] JSON (store::archived::LeaseArgs): {"op": "take" (take it or renew it when it is ours)
-- | "drop" (drop it when it is ours), "token": this coordinator's token, "lease_ms": the lease (ms,
-- >= 1)}.
-- Returns {'held'} (ours now), {'busy'} (another coordinator's) or {'dropped'}.
-- Invariant: only the holder renews or drops the lease; a dead holder's lease lapses by itself.
local a = cjson.decode(ARGV[1])
local holder = redis.call('GET', KEYS[1])
if a.op == 'drop' then
  if holder == a.token then redis.call('DEL', KEYS[1]) end
  return { 'dropped' }
end
if holder == a.token then
  redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(1, a.lease_ms)))
  return { 'held' }
end
if redis.call('SET', KEYS[1], a.token, 'NX', 'PX', string.format('%.0f', math.max(1, a.lease_ms))) then
  return { 'held' }
end
return { 'busy' }
