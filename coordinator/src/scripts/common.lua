-- common.lua: the helpers every run script shares (store.rs `RunScript`). Loaded once as the top of
-- a Redis function library, in which each run script is a function that calls `begin` with its
-- KEYS and ARGV, runs its body and answers `reply` (FCALL); on a Redis without functions (before
-- 7.0) it is prepended to each script instead (EVALSHA), which does the same. So this text runs
-- at library load time, where Redis 7.0 gives only `redis` and basic Lua: nothing at its top level
-- may call a global function (not even `tonumber`) or read KEYS or ARGV; the per-call state below
-- is set by `begin`.
-- Every reply is {the script's own reply, the effects it wrote} (see `effect` below).
-- Every key a run script touches is declared in KEYS; none is built here from a prefix.
-- KEYS[1] run hash, KEYS[2] steps hash, KEYS[3] events stream: all under the run's hash tag.
-- KEYS[4] the timers sorted set, KEYS[5] the outbox sorted set, KEYS[6] the effects outbox (sorted
-- set): per namespace, written here so that a state change and the durable follow-up it needs (a
-- dispatch to publish, a slot to give back, a parent to notify) commit together. Some scripts take
-- more keys after these (from KEYS[7]).
-- ARGV[1] now (Unix ms), ARGV[2] approximate max length of the events stream,
-- ARGV[3] retention of a finished run (seconds), ARGV[4] the outbox hold (ms: how long after a
-- dispatch its outbox entry, or an effect, comes due for the sweeper, unless the committing
-- coordinator holds it longer while it publishes, RabbitMQ confirmed it, or the effect was applied),
-- ARGV[5] the run id, ARGV[6] the script's arguments: one JSON object of named fields (`A`; each
-- script's header names them, store.rs has one struct per script). Some scripts take more after.
-- Every run script's A may also hold `archive`: the index into KEYS of the archive outbox
-- (keys.rs `archive_outbox`), put in by store.rs only when the coordinator has an archive
-- (`archive_url`); finish_run then queues the run there (see finish_run).
-- The call's keys and arguments, and what `begin` reads from them (each call sets them anew).
local KEYS, ARGV
local RUN, STEPS, EVENTS, TIMERS, OUTBOX, EFFECTS_KEY
local NOW, MAXLEN, RETENTION, GRACE, RUN_ID, A
-- The effects this call wrote (store.rs `Effect`), returned beside its reply.
local EFFECTS
-- The queued plan of the calling script (store.rs `QueuedPlan`), or nil: for each step that goes
-- straight to a worker when dispatched, { key = index into KEYS of its handler's queued index,
-- s2s_ms = its schedule-to-start timeout (ms, 0 for none) }: the argument `queued` of the scripts
-- that dispatch.
local QUEUED

-- Sets the per-call state from a call's KEYS and ARGV: the first thing every run script does.
local function begin(keys, argv)
  KEYS, ARGV = keys, argv
  RUN, STEPS, EVENTS, TIMERS, OUTBOX, EFFECTS_KEY = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
  NOW = tonumber(argv[1])
  MAXLEN = argv[2]
  RETENTION = tonumber(argv[3])
  GRACE = tonumber(argv[4])
  RUN_ID = argv[5]
  A = cjson.decode(argv[6])
  EFFECTS = {}
  QUEUED = A.queued
end

-- The answer of a run script whose body answered `reply`: {reply, the effects it wrote}, or an
-- error reply as it is.
local function answer(reply)
  if type(reply) == 'table' and reply.err then return reply end
  return { reply, EFFECTS }
end
-- The latest due time stored (Unix ms): 9999-12-31T23:59:59.999Z (exact as a double, and still
-- printable as RFC 3339); deadlines are clamped to it.
local LATEST = 253402300799999
local TERMINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }
-- Step statuses of a step that is not over (a fan-out element's too).
local LIVE = { pending = true, dispatched = true, running = true, retrying = true, waiting = true }
-- Statuses that let the steps after a step go on.
local DONE = { succeeded = true, skipped = true }

local function split(s, sep)
  local out = {}
  if s == nil or s == '' then return out end
  for part in string.gmatch(s, '[^' .. sep .. ']+') do out[#out + 1] = part end
  return out
end

local function sget(step, field)
  return redis.call('HGET', STEPS, step .. ':' .. field)
end

local function sset(step, ...)
  local args = { ... }
  local flat = {}
  for i = 1, #args, 2 do
    flat[#flat + 1] = step .. ':' .. args[i]
    flat[#flat + 1] = args[i + 1]
  end
  redis.call('HSET', STEPS, unpack(flat))
end

-- Calls `redis.call(cmd, key, head..., values...)` for the values of `flat` in calls of at most
-- 1,000 values (an even count, so pairs stay whole): Lua's `unpack` is bounded by its C stack
-- (about 8,000), and one command of many values costs a fraction of as many commands of one.
local function call_chunked(cmd, key, head, flat)
  local i = 1
  while i <= #flat do
    local args = {}
    for _, h in ipairs(head) do args[#args + 1] = h end
    local last = math.min(i + 999, #flat)
    for j = i, last do args[#args + 1] = flat[j] end
    redis.call(cmd, key, unpack(args))
    i = last + 1
  end
end

local function event(kind, step, attempt, status, detail)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*',
    'kind', kind, 'step', step, 'attempt', tostring(attempt), 'status', status,
    'detail', detail or '', 'at', tostring(NOW))
end

-- Writes a cross-run effect `json` (an object with a `kind`: see store.rs `Effect`) to the effects
-- outbox in this commit, due for the sweeper after the outbox hold; the committing coordinator
-- applies it at once with a script or commands whose keys it declares, and removes it. Applying
-- one twice changes nothing (each kind is idempotent).
local function effect(json)
  redis.call('ZADD', EFFECTS_KEY, NOW + GRACE, json)
  EFFECTS[#EFFECTS + 1] = json
end

-- The attempts of a step kept in full in its history, and the longest error kept per attempt
-- (bytes): baton_shared::limits::KEPT_ATTEMPTS and MAX_ATTEMPT_ERROR_BYTES, put in by store.rs.
local KEPT_ATTEMPTS = __KEPT_ATTEMPTS__
local MAX_ATTEMPT_ERROR = __MAX_ATTEMPT_ERROR_BYTES__

-- `s` cut to at most `max` bytes at a UTF-8 character boundary, marked '… (cut)' when cut.
local function cut_text(s, max)
  if #s <= max then return s end
  local e = max
  -- back off continuation bytes (0x80-0xBF) so that no character is split
  while e > 0 do
    local b = string.byte(s, e + 1)
    if b < 128 or b >= 192 then break end
    e = e - 1
  end
  return string.sub(s, 1, e) .. '… (cut)'
end

-- Deletes what attempt `n` of `step` kept beside its history entry: its input and its log lines
-- (fields of append_logs.lua; its `:log_index` line stays, and reads as no lines).
local function forget_attempt(step, n)
  local sfx = '@' .. tostring(n)
  local r = redis.call('HMGET', STEPS, step .. ':log_first' .. sfx, step .. ':log_n' .. sfx, step .. ':log_bytes' .. sfx)
  local fields = { step .. ':input' .. sfx, step .. ':log_first' .. sfx, step .. ':log_n' .. sfx, step .. ':log_bytes' .. sfx,
    step .. ':log_over' .. sfx }
  -- Its bytes no longer count against the run's bound (append_logs.lua `:log_bytes`).
  if tonumber(r[3]) then redis.call('HINCRBY', STEPS, ':log_bytes', -tonumber(r[3])) end
  for seq = tonumber(r[1]) or 0, (tonumber(r[2]) or 0) - 1 do
    fields[#fields + 1] = step .. ':log' .. sfx .. '#' .. seq
  end
  redis.call('HDEL', STEPS, unpack(fields))
end

-- Appends one finished attempt to the step's history (a JSON array), its error cut to
-- MAX_ATTEMPT_ERROR bytes. Only the last KEPT_ATTEMPTS stay; older ones are counted in
-- `<step>:history_dropped`, so a step retried 1,000 times holds a bounded entry. `started_at`
-- (Unix ms, 0: never started) defaults to the step's own. `extra` (optional): more fields of the
-- entry (error_type, error_details), those that are '' left out. An attempt that leaves the history
-- takes its kept input and log lines (append_logs.lua) with it.
local function record_attempt(step, attempt, outcome, err, worker, started_at, extra)
  local entry = {
    number = attempt, outcome = outcome, error = cut_text(err or '', MAX_ATTEMPT_ERROR), worker = worker or '',
    started_at = started_at or tonumber(sget(step, 'started_at')) or 0, finished_at = NOW,
  }
  for k, v in pairs(extra or {}) do
    if v ~= '' then entry[k] = v end
  end
  local h = sget(step, 'history')
  local list = {}
  if h and h ~= '' and h ~= '[]' then list = cjson.decode(h) end
  list[#list + 1] = entry
  local over = #list - KEPT_ATTEMPTS
  if over > 0 then
    local kept = {}
    for i = 1, over do forget_attempt(step, list[i].number) end
    for i = over + 1, #list do kept[#kept + 1] = list[i] end
    list = kept
    redis.call('HINCRBY', STEPS, step .. ':history_dropped', over)
  end
  sset(step, 'history', cjson.encode(list))
end

-- Appends a dispatch payload for `step` to `out`: step id, attempt, attempt base, dispatched_at,
-- the step's own input ('' for the run input; a fan-out element's input), resume data ('' unless a
-- suspended handler was resumed), '1' when this commit also put the attempt in its handler's
-- queued index (and armed its schedule-to-start timer) else '0', then a count and
-- (step, status, output) triples of the steps in `reads_csv` (its parents and the steps its
-- expressions read).
local function push_payload(out, step, reads_csv, queued)
  local ps = split(reads_csv, ',')
  out[#out + 1] = step
  out[#out + 1] = sget(step, 'attempt') or '0'
  out[#out + 1] = sget(step, 'base') or '0'
  out[#out + 1] = sget(step, 'dispatched_at') or '0'
  out[#out + 1] = sget(step, 'input') or ''
  out[#out + 1] = sget(step, 'resume') or ''
  out[#out + 1] = queued and '1' or '0'
  out[#out + 1] = tostring(#ps)
  for _, p in ipairs(ps) do
    out[#out + 1] = p
    out[#out + 1] = sget(p, 'status') or 'pending'
    out[#out + 1] = sget(p, 'output') or 'null'
  end
end

-- Splits a spec entry 'step=p1,p2=r1,r2' into step, parents csv, reads csv (parents plus the steps
-- its expressions read).
local function parse_spec(spec)
  local a = string.find(spec, '=', 1, true)
  local step, rest = string.sub(spec, 1, a - 1), string.sub(spec, a + 1)
  local b = string.find(rest, '=', 1, true)
  if not b then return step, rest, rest end
  return step, string.sub(rest, 1, b - 1), string.sub(rest, b + 1)
end

-- The number of a step's next attempt: numbering goes on across retries and re-runs of a run, so a
-- late result of an earlier attempt can never pass for a new one.
local function next_attempt(step)
  return (tonumber(sget(step, 'attempt')) or 0) + 1
end

-- Appends the values `...` to the list `t` (for the batches of call_chunked).
local function push(t, ...)
  local n = select('#', ...)
  for i = 1, n do t[#t + 1] = (select(i, ...)) end
end

-- What a dispatch of attempt `attempt` of `step` writes: its steps-hash fields (name, value
-- pairs) and, from outbox_entry, its outbox entry (score, member). dispatch(), dispatch_item()
-- and create_run.lua's batched roots all write these, so a dispatch is recorded one way.
local function dispatch_fields(step, attempt)
  return step .. ':status', 'dispatched', step .. ':attempt', tostring(attempt), step .. ':dispatched_at', tostring(NOW)
end
local function outbox_entry(step)
  return NOW + GRACE, RUN_ID .. '|' .. step
end

-- Commits a dispatch of `step` as `attempt`, with its outbox entry: until RabbitMQ confirms the
-- publish (or the coordinator starts the step itself), the sweeper will publish it again.
local function dispatch(step, attempt)
  redis.call('HSET', STEPS, dispatch_fields(step, attempt))
  redis.call('ZADD', OUTBOX, outbox_entry(step))
  event('step', step, attempt, 'dispatched', '')
end

-- The entry (score: now, member) of attempt `attempt` of `step` in its handler's queued index;
-- its schedule-to-start timer is 'schedule-to-start|' .. member.
local function queued_entry(step, attempt)
  return NOW, RUN_ID .. '|' .. step .. '|' .. tostring(attempt)
end
-- When a schedule-to-start timer armed now per `plan` (an entry of QUEUED) comes due (Unix ms),
-- nil for none.
local function s2s_due(plan)
  local s2s = tonumber(plan.s2s_ms) or 0
  if s2s > 0 then return math.min(NOW + s2s, LATEST) end
  return nil
end
-- Trims the entries of queued index `key` older than the retention (their task left the queue
-- unseen: dead-lettered, purged).
local function trim_queued(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%d', NOW - RETENTION * 1000))
end

-- Puts attempt `attempt` of `step` in its handler's queued index (score now, NX: a re-sent
-- dispatch keeps its first time) and arms its schedule-to-start timer (NX), per `plan` (an entry of
-- QUEUED); old entries are trimmed on the way (trim_queued). Was operations.rs `note_dispatched`,
-- a round trip of its own.
local function index_queued(step, attempt, plan)
  local key = KEYS[tonumber(plan.key)]
  local at, member = queued_entry(step, attempt)
  redis.call('ZADD', key, 'NX', at, member)
  trim_queued(key)
  local due = s2s_due(plan)
  if due then redis.call('ZADD', TIMERS, 'NX', due, 'schedule-to-start|' .. member) end
end

-- Dispatches every step of `specs` ('step=p1,p2=reads;step2=p1') that is pending and whose parents
-- are all done (succeeded or skipped), appending its payload to `out`. The coordinator decides
-- whether a dispatched step runs or is skipped; a step in QUEUED that has a parent that succeeded
-- (one whose parents were all skipped is skipped) is indexed as queued in the same commit.
-- Returns how many were dispatched.
local function dispatch_ready(out, specs)
  local n = 0
  for _, spec in ipairs(split(specs, ';')) do
    local step, parents, reads = parse_spec(spec)
    if sget(step, 'status') == 'pending' then
      local ready, any_ok = true, false
      for _, p in ipairs(split(parents, ',')) do
        local ps = sget(p, 'status')
        if not DONE[ps] then ready = false break end
        if ps == 'succeeded' then any_ok = true end
      end
      if ready then
        local attempt = next_attempt(step)
        dispatch(step, attempt)
        local plan = QUEUED and QUEUED[step]
        local queued = plan ~= nil and (any_ok or parents == '')
        if queued then index_queued(step, attempt, plan) end
        push_payload(out, step, reads, queued)
        n = n + 1
      end
    end
  end
  return n
end

-- Gives back the concurrency slot attempt `attempt` of `step` holds (or waits for), if any,
-- through an effect (its pool's keys are not this run's): the slot leaves the pool's holders and
-- waiters, and a 'sem-wake' timer wakes the pool, so the next waiter is dispatched.
local function release_slot(step, attempt)
  local pool = sget(step, 'slot')
  if not pool or pool == '' then return end
  effect('{"kind":"release_slot","pool":' .. cjson.encode(pool) .. ',"member":'
    .. cjson.encode(RUN_ID .. '|' .. step .. '|' .. tostring(attempt)) .. '}')
end

-- Finishes the run: sets its status, cancels unfinished steps (and the child runs of workflow
-- steps, through a timer), gives back their slots and the run slot (through effects), tells a
-- parent run (a workflow step's through a 'child-done' timer, an emitting step's through an
-- 'emit_done' effect), and starts the retention clock.
-- A cancelled step's attempt, if it had one (dispatched, running, waiting, or waiting out a retry
-- backoff), goes into its history as 'cancelled', so that the attempts a RetryRun counts as
-- "before" are all listed.
local function finish_run(status, output, err)
  redis.call('HSET', RUN, 'status', status, 'finished_at', tostring(NOW), 'output', output or '', 'error', err or '')
  for _, s in ipairs(split(redis.call('HGET', RUN, 'step_ids'), ',')) do
    local st = sget(s, 'status')
    if LIVE[st] then
      local attempt = tonumber(sget(s, 'attempt')) or 0
      if st ~= 'pending' and attempt > 0 then
        -- Only a running or waiting attempt has started (started_at may be an earlier attempt's).
        local began = st == 'running' or st == 'waiting'
        local started = began and (tonumber(sget(s, 'started_at')) or 0) or 0
        local why = st == 'retrying' and ('run ' .. status .. ' before this attempt was dispatched') or ('run ' .. status)
        record_attempt(s, attempt, 'cancelled', why, began and (sget(s, 'worker') or '') or '', started)
      end
      release_slot(s, sget(s, 'attempt') or '0')
      sset(s, 'status', 'cancelled', 'finished_at', tostring(NOW))
      event('step', s, tonumber(sget(s, 'attempt')) or 0, 'cancelled', 'run ' .. status)
      local child = sget(s, 'child_run')
      if child and child ~= '' then
        redis.call('ZADD', TIMERS, NOW, 'cancel-child|' .. child .. '||0')
      end
    end
  end
  local parent = redis.call('HMGET', RUN, 'parent_run', 'parent_step', 'parent_attempt', 'parent_kind')
  if parent[1] and parent[1] ~= '' and parent[4] == 'emit' then
    -- An emitted run: its emitting step counts it (once, whatever re-emissions happen) and the
    -- coordinator starts more or completes the step, through an effect (the parent's keys are
    -- another run's).
    effect('{"kind":"emit_done","parent_run":' .. cjson.encode(parent[1]) .. ',"parent_step":'
      .. cjson.encode(parent[2]) .. ',"run":' .. cjson.encode(RUN_ID) .. ',"succeeded":'
      .. (status == 'succeeded' and 'true' or 'false') .. '}')
  elseif parent[1] and parent[1] ~= '' then
    redis.call('ZADD', TIMERS, NOW, 'child-done|' .. parent[1] .. '|' .. parent[2] .. '|' .. parent[3])
  end
  local run_slot = redis.call('HGET', RUN, 'run_slot')
  if run_slot and run_slot ~= '' then
    -- The run slot goes back to its pool (a 'run-wake' timer starts the next queued run).
    redis.call('HSET', RUN, 'waiting_for', '')
    effect('{"kind":"release_run_slot","pool":' .. cjson.encode(run_slot) .. ',"run":' .. cjson.encode(RUN_ID) .. '}')
  end
  event('run', '', 0, status, err or '')
  if A.archive then
    -- Queued for the archive in this same commit (archiver.rs): the run stays whole in Redis,
    -- without expiry, until it is written to the archive; then the archiver shrinks it to a
    -- tombstone that expires after `archive_grace`. A run finished again after a re-run is queued
    -- again, scored by its new end.
    redis.call('ZADD', KEYS[tonumber(A.archive)], NOW, RUN_ID)
    redis.call('PERSIST', RUN)
    redis.call('PERSIST', STEPS)
    redis.call('PERSIST', EVENTS)
  else
    redis.call('EXPIRE', RUN, RETENTION)
    redis.call('EXPIRE', STEPS, RETENTION)
    redis.call('EXPIRE', EVENTS, RETENTION)
  end
end

-- Whether the run is of workflow@version `pinned` (what the caller planned with).
local function pinned_to(pinned)
  local wf = redis.call('HMGET', RUN, 'workflow', 'version')
  return (wf[1] or '') .. '@' .. (wf[2] or '') == pinned
end

-- The run's output: the leaves' outputs as a JSON object keyed by step id.
local function leaves_output(leaves_csv)
  local parts = {}
  for _, leaf in ipairs(split(leaves_csv, ',')) do
    parts[#parts + 1] = cjson.encode(leaf) .. ':' .. (sget(leaf, 'output') or 'null')
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

-- Stores the run's graph `g` (the argument `graph`: { children = { step = 'c1=p1,p2=r1;c2=p1' },
-- reads = { step = 'r1,r2' }, leaves = 'l1,l2' }) where its scripts read it: `<step>:children`
-- and `<step>:reads` in the steps hash (only steps that have some), `leaves` in the run hash.
-- Written once, by create_run.lua; a run created before graphs were stored (layout 2) gets it from
-- the first script that needs it (see graph_missing).
local function put_graph(g)
  local flat = {}
  for _, part in ipairs({ 'children', 'reads' }) do
    for step, text in pairs(g[part] or {}) do
      if text ~= '' then
        flat[#flat + 1] = step .. ':' .. part
        flat[#flat + 1] = text
      end
    end
  end
  if #flat > 0 then redis.call('HSET', STEPS, unpack(flat)) end
  redis.call('HSET', RUN, 'leaves', g.leaves or '')
end

-- Whether the run (which exists) has no stored graph and the caller sent none: the script then
-- answers {'no_graph'} before it changes anything, and the caller calls again with `graph`.
local function graph_missing()
  if A.graph and A.graph ~= cjson.null then
    put_graph(A.graph)
    return false
  end
  return redis.call('HEXISTS', RUN, 'leaves') == 0
end

-- The steps `step` reads (its parents and the steps its expressions read), comma-separated, as
-- the stored graph has them: none for a fan-out element (its input is its own).
local function reads_of(step)
  if string.find(step, '#', 1, true) then return '' end
  return sget(step, 'reads') or ''
end

-- Every step with its parents and reads, 'a=;b=a;c=a,b=a,b' (as dispatch_ready reads a spec),
-- rebuilt from the stored graph: a step's entry is in each of its parents' children.
local function all_steps_spec()
  local ids = split(redis.call('HGET', RUN, 'step_ids'), ',')
  local entry = {}
  for _, s in ipairs(ids) do
    for _, e in ipairs(split(sget(s, 'children') or '', ';')) do
      entry[string.match(e, '^[^=]*')] = e
    end
  end
  local out = {}
  for _, s in ipairs(ids) do
    local r = reads_of(s)
    out[#out + 1] = entry[s] or (r == '' and (s .. '=') or (s .. '==' .. r))
  end
  return table.concat(out, ';')
end

-- Ends `step` as `word` ('succeeded' or 'skipped') with `output`, dispatches the children that became
-- ready (its children as the stored graph has them), and finishes the run after its last step.
-- Returns {'ok', run_status, run_input, n, payloads}.
local function step_done(step, attempt, word, output, detail)
  -- A step that ends well has no error (its failed attempts keep theirs in the history).
  sset(step, 'status', word, 'output', output, 'error', '', 'finished_at', tostring(NOW))
  event('step', step, attempt, word, detail or '')
  local left = redis.call('HINCRBY', RUN, 'steps_left', -1)
  local out = { 'ok', '', redis.call('HGET', RUN, 'input'), '0' }
  local n = dispatch_ready(out, sget(step, 'children') or '')
  out[4] = tostring(n)
  if left <= 0 then
    finish_run('succeeded', leaves_output(redis.call('HGET', RUN, 'leaves') or ''), '')
    out[2] = 'succeeded'
  else
    out[2] = redis.call('HGET', RUN, 'status')
  end
  return out
end

-- Fails `step` for good, and with it the run.
local function step_failed(step, attempt, message)
  sset(step, 'status', 'failed', 'error', message, 'finished_at', tostring(NOW))
  event('step', step, attempt, 'failed', message)
  finish_run('failed', '', 'step ' .. step .. ' failed after ' .. attempt .. ' attempt(s): ' .. message)
  return { 'failed' }
end

-- Commits the dispatch of a fan-out element (`<step>#<index>`) with its outbox entry. Elements keep
-- no events of their own: 10,000 of them would crowd the run's history out of its stream.
local function dispatch_item(item)
  redis.call('HSET', STEPS, dispatch_fields(item, next_attempt(item)))
  redis.call('ZADD', OUTBOX, outbox_entry(item))
end

-- Fan-out elements dispatched by one script call at most when a fan-out starts
-- (store::ITEM_BATCH, put in by store.rs); each element's completion dispatches at most 2 more
-- until `max_parallel` are in flight, so no call does work in proportion to the element count.
local ITEM_BATCH = __ITEM_BATCH__
-- Width of one element index in `<step>:items_order` (store::ORDER_WIDTH).
local ORDER_WIDTH = __ORDER_WIDTH__

-- The index of the element at position `pos` (0-based) of a fan-out's running order: the index
-- itself when `order` is '' (every element runs), else the pos-th ORDER_WIDTH-digit entry of
-- `order` (a RetryRun kept some elements, which are left out).
local function item_at(order, pos)
  if order == '' then return pos end
  return tonumber(string.sub(order, pos * ORDER_WIDTH + 1, (pos + 1) * ORDER_WIDTH))
end

-- Dispatches at most `most` more elements of fan-out step `parent` while fewer than its
-- `max_parallel` are in flight, appending their payloads to `out`; when QUEUED has an entry for
-- `parent` (its elements go straight to a worker), each joins its handler's queued index in this
-- same commit. Returns how many.
local function dispatch_items(out, parent, most)
  local f = redis.call('HMGET', STEPS, parent .. ':items_total', parent .. ':items_ok', parent .. ':items_failed',
    parent .. ':items_kept', parent .. ':items_next', parent .. ':items_order', parent .. ':items_parallel')
  local total, ok, failed = tonumber(f[1]) or 0, tonumber(f[2]) or 0, tonumber(f[3]) or 0
  local kept, pos, order, parallel = tonumber(f[4]) or 0, tonumber(f[5]) or 0, f[6] or '', tonumber(f[7]) or 1
  local to_run = total - kept
  local in_flight = pos - (ok - kept) - failed
  local n = 0
  local plan = QUEUED and QUEUED[parent]
  while pos < to_run and in_flight < parallel and n < most do
    local item = parent .. '#' .. item_at(order, pos)
    dispatch_item(item)
    if plan then index_queued(item, sget(item, 'attempt'), plan) end
    push_payload(out, item, '', plan ~= nil)
    pos, in_flight, n = pos + 1, in_flight + 1, n + 1
  end
  sset(parent, 'items_next', tostring(pos))
  return n
end

-- Every element of fan-out step `parent` (attempt `attempt`) succeeded: the coordinator gathers
-- their outputs in pages (no script copies 10,000 of them at once) and completes the step with
-- outcome 'items', through an 'items' timer due now (so a coordinator that dies meanwhile leaves
-- the work to another).
local function items_done(parent, attempt)
  sset(parent, 'waiting_for', 'gathering the outputs of its elements')
  redis.call('ZADD', TIMERS, NOW, 'items|' .. RUN_ID .. '|' .. parent .. '|' .. attempt)
end

-- Marks the run running when its first step starts.
local function run_started()
  if redis.call('HGET', RUN, 'status') == 'pending' then
    redis.call('HSET', RUN, 'status', 'running', 'started_at', tostring(NOW))
    event('run', '', 0, 'running', '')
  end
end
