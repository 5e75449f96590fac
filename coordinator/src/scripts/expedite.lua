-- expedite.lua: makes the outbox's pending entries due now, so the sweeper re-sends them at once.
-- Called when a fault that kept publishes from being confirmed has ended (RabbitMQ reconnected,
-- confirms arrive again, Redis answers again): those entries would otherwise wait out the rest of
-- their dispatch grace.
-- KEYS[1] the outbox.
-- ARGV[1] JSON (store::claims::ExpediteArgs): {"now": Unix ms, "horizon": the latest score to move
-- (now + grace), "limit": most entries to move}.
-- Returns {'moved', n}: how many entries were moved.
-- Invariant: only scores in the future move, to now; an entry another coordinator holds under a
-- claim may be re-sent twice, which the attempt fencing makes harmless (the second start is stale).
local a = cjson.decode(ARGV[1])
local now = string.format('%.0f', a.now)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, string.format('%.0f', a.horizon), 'LIMIT', 0,
  tonumber(a.limit))
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], 'XX', now, m)
end
return { 'moved', tostring(#due) }
