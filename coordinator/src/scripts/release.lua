-- release.lua: removes a claimed entry, unless it was rescheduled meanwhile.
-- KEYS[1] the sorted set.
-- ARGV[1] JSON (store::claims::ReleaseArgs): {"member": the entry, "held": the lease score it was
-- claimed (or last renewed) with}.
-- Returns {'released'} when removed, else {'kept'} (rescheduled, or claimed by another coordinator).
-- Invariant: an entry rescheduled by its handler during the claim is not lost.
local a = cjson.decode(ARGV[1])
local score = redis.call('ZSCORE', KEYS[1], a.member)
if score and tonumber(score) == tonumber(a.held) then
  redis.call('ZREM', KEYS[1], a.member)
  return { 'released' }
end
return { 'kept' }
