-- renew.lua: moves a claim's lease forward (or gives the claim back) for the entries still held.
-- KEYS[1] the sorted set (timers, outbox or schedule-due). ARGV[1] the lease score the entries were
-- claimed or last renewed with, ARGV[2] the new score (a later lease, or now to give them back),
-- ARGV[3..] the members.
-- Returns how many entries were moved.
-- Invariant: an entry whose score is not ARGV[1] is not ours any more (handled and removed,
-- rescheduled by its handler, or claimed by another coordinator after our lease lapsed) and is left
-- alone.
local old, new = tonumber(ARGV[1]), ARGV[2]
local n = 0
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == old then
    redis.call('ZADD', KEYS[1], 'XX', new, ARGV[i])
    n = n + 1
  end
end
return n
