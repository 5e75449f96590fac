-- expedite.lua: makes the outbox's pending entries due now, so the sweeper re-sends them at once.
-- Called when a fault that kept publishes from being confirmed has ended (RabbitMQ reconnected,
-- confirms arrive again, Redis answers again): those entries would otherwise wait out the rest of
-- their dispatch grace.
-- KEYS[1] the outbox. ARGV[1] now (Unix ms), ARGV[2] the latest score to move (now + grace),
-- ARGV[3] most entries to move.
-- Returns how many entries were moved.
-- Invariant: only scores in the future move, to now; an entry another coordinator holds under a
-- claim may be re-sent twice, which the attempt fencing makes harmless (the second start is stale).
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[1], m)
end
return #due
