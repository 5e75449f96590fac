-- release.lua: removes a claimed entry, unless it was rescheduled meanwhile.
-- KEYS[1] the sorted set. ARGV[1] member, ARGV[2] the lease score it was claimed with.
-- Returns 1 if removed, else 0.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
