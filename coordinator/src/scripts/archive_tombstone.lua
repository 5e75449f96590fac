-- archive_tombstone.lua: shrinks a run that was just written to the archive to its tombstone, and
-- takes it out of the archive outbox (archiver.rs, after `Archive::write` returned).
-- KEYS[1] the run hash, KEYS[2] its steps hash, KEYS[3] its events stream, KEYS[4] its live log
-- tail (keys.rs `run`, `steps`, `events`, `log_tail`), KEYS[5] the archive outbox
-- (`archive_outbox`), KEYS[6] the index of all runs and KEYS[7] the workflow's runs index
-- (`runs_index`, `workflow_runs_index`), KEYS[8..] the run's emit plans and emit-done sets
-- (`emit_plan`, `emit_done`) of its emitting steps, if any.
-- ARGV[1] JSON (store::archived::TombstoneArgs): {"run": the run id, "finished_at": its end as the
-- archive outbox scored it (Unix ms), "now": Unix ms, "grace_ms": how long the tombstone stays
-- (ms, >= 1), "member": its member in the two run indexes}.
-- Returns {'tombstoned'}; {'already'} (a tombstone already: an archiver that died after this
-- script ran); {'missing'} (no run); {'moved', status} (the run is no longer the one archived: a
-- re-run started it again, or it ended again since): only an outbox entry of the archived end
-- goes.
-- Invariant: the tombstone keeps what live logic reads of a finished run: its status (an
-- idempotency key's SubmitRun answers `exists` with it), workflow and version, its parent link
-- and depth, its creation and end, its idempotency key, and for a workflow step's child run its
-- output and error (the parent's 'child-done' timer reads them); everything else of the run goes
-- at once, and the tombstone itself after the grace. A newer end of the run (scored later) keeps
-- its outbox entry.
local a = cjson.decode(ARGV[1])
local TERMINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }
local function drop_entry()
  local score = redis.call('ZSCORE', KEYS[5], a.run)
  if score and tonumber(score) == tonumber(a.finished_at) then redis.call('ZREM', KEYS[5], a.run) end
end
local f = redis.call('HMGET', KEYS[1], 'status', 'finished_at', 'archived_at', 'parent_run', 'parent_kind')
if f[3] then
  drop_entry()
  return { 'already' }
end
if not f[1] then
  drop_entry()
  return { 'missing' }
end
if not TERMINAL[f[1]] or tonumber(f[2]) ~= tonumber(a.finished_at) then
  drop_entry()
  return { 'moved', f[1] }
end
local keep = { 'id', 'workflow', 'version', 'status', 'idempotency_key', 'created_at', 'finished_at', 'parent_run',
  'parent_step', 'parent_attempt', 'parent_kind', 'depth' }
if f[4] and f[4] ~= '' and f[5] ~= 'emit' then
  keep[#keep + 1] = 'output'
  keep[#keep + 1] = 'error'
end
local values = redis.call('HMGET', KEYS[1], unpack(keep))
local flat = {}
for i, name in ipairs(keep) do
  if values[i] and values[i] ~= '' then
    flat[#flat + 1] = name
    flat[#flat + 1] = values[i]
  end
end
flat[#flat + 1] = 'archived_at'
flat[#flat + 1] = string.format('%.0f', a.now)
for i = 1, #KEYS do
  if i <= 4 or i >= 8 then redis.call('DEL', KEYS[i]) end
end
redis.call('HSET', KEYS[1], unpack(flat))
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(1, a.grace_ms)))
redis.call('ZREM', KEYS[6], a.member)
redis.call('ZREM', KEYS[7], a.member)
drop_entry()
return { 'tombstoned' }
