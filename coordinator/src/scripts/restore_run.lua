-- restore_run.lua: brings an archived run back into Redis (RetryRun or RerunRun of a run that only
-- the archive holds whole), replacing its tombstone if it has one; the caller then resets it.
-- KEYS[1] the run hash, KEYS[2] its steps hash, KEYS[3] its events stream (keys.rs `run`,
-- `steps`, `events`), KEYS[4] the index of all runs and KEYS[5] the workflow's runs index.
-- ARGV[1] JSON (store::archived::RestoreArgs): {"run": the run hash's [field, value] pairs,
-- "steps": the steps hash's [field, value] pairs, "events": the history, oldest first, as
-- [stream id, [[field, value], ...]], "member": the run's member in the two run indexes}.
-- Returns {'restored'} or {'live'} (Redis holds the run whole: nothing changed).
-- Invariant: a run Redis holds whole is never overwritten; a restored run is whole (run, steps,
-- history, index entries) and has no expiry.
local a = cjson.decode(ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], 'archived_at') == 0 then
  return { 'live' }
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
-- HSET in chunks (unpack has a limit on how many values it spreads), into KEYS[which].
local function put(which, list)
  local flat = {}
  for _, p in ipairs(list) do
    flat[#flat + 1] = p[1]
    flat[#flat + 1] = p[2]
    if #flat >= 1000 then
      redis.call('HSET', KEYS[which], unpack(flat))
      flat = {}
    end
  end
  if #flat > 0 then redis.call('HSET', KEYS[which], unpack(flat)) end
end
put(1, a.run)
put(2, a.steps)
for _, e in ipairs(a.events) do
  local flat = {}
  for _, p in ipairs(e[2]) do
    flat[#flat + 1] = p[1]
    flat[#flat + 1] = p[2]
  end
  if #flat > 0 then redis.call('XADD', KEYS[3], e[1], unpack(flat)) end
end
redis.call('ZADD', KEYS[4], 0, a.member)
redis.call('ZADD', KEYS[5], 0, a.member)
return { 'restored' }
