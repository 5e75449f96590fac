-- take_over.lua: a copy of an attempt was dropped as a duplicate while another worker held it
-- (start_step.lua armed a 'held' timer, which fired). If that worker is gone (its liveness key
-- KEYS[7] expired), the attempt goes back to dispatched, with its outbox entry, to be published
-- again: whichever worker starts it then holds it. The slot and timeout timer it had stay.
-- A (ARGV[6], store.rs `TakeOverJson`): step, attempt, holder (the worker that held it); graph:
-- (only after {'no_graph'}) as complete_step.lua's. The step's reads come from the stored graph.
-- KEYS[7] the holder's liveness key (keys.rs `worker_alive`).
-- Returns {'stale'} (the attempt ended, or another worker holds it now), {'no_graph'} (nothing
-- changed: call again with `graph`), {'alive', ms_left}
-- (ms_left -1: alive without an expiry), or {'dispatch', run_input, payload (see push_payload)}.
-- Invariant: an attempt whose holder is alive is never sent again; the holder's late report after
-- this is stale (the attempt is no longer running on it).
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt, holder = A.step, tonumber(A.attempt), A.holder
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'running'
  or holder == '' or sget(step, 'worker') ~= holder then
  return { 'stale' }
end
local ttl = redis.call('PTTL', KEYS[7])
if ttl ~= -2 then return { 'alive', tostring(ttl) } end
if graph_missing() then return { 'no_graph' } end
-- The same attempt, sent again (as dispatch() does, without numbering a new one).
sset(step, 'status', 'dispatched', 'dispatched_at', tostring(NOW))
redis.call('ZADD', OUTBOX, NOW + GRACE, RUN_ID .. '|' .. step)
if not string.find(step, '#', 1, true) then
  event('step', step, attempt, 'dispatched', 'sent again: worker ' .. holder .. ', which held it, is gone')
end
local out = { 'dispatch', redis.call('HGET', RUN, 'input') }
push_payload(out, step, reads_of(step))
return out
