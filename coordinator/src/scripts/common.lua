-- common.lua: prepended to every run script at load time (see store.rs).
-- KEYS[1] run hash, KEYS[2] steps hash, KEYS[3] events stream: all under the run's hash tag.
-- ARGV[1] now (Unix ms), ARGV[2] approximate max length of the events stream,
-- ARGV[3] retention of a finished run (seconds). Script-specific arguments start at ARGV[4].
local RUN, STEPS, EVENTS = KEYS[1], KEYS[2], KEYS[3]
local NOW = tonumber(ARGV[1])
local MAXLEN = ARGV[2]
local RETENTION = tonumber(ARGV[3])
local TERMINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }

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

local function event(kind, step, attempt, status, detail)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', MAXLEN, '*',
    'kind', kind, 'step', step, 'attempt', tostring(attempt), 'status', status,
    'detail', detail or '', 'at', tostring(NOW))
end

-- Appends one finished attempt to the step's history (a JSON array).
local function record_attempt(step, attempt, outcome, err, worker)
  local entry = cjson.encode({
    number = attempt, outcome = outcome, error = err or '', worker = worker or '',
    started_at = tonumber(sget(step, 'started_at')) or 0, finished_at = NOW,
  })
  local h = sget(step, 'history')
  if not h or h == '' or h == '[]' then
    h = '[' .. entry .. ']'
  else
    h = string.sub(h, 1, -2) .. ',' .. entry .. ']'
  end
  sset(step, 'history', h)
end

-- Appends a dispatch payload for `step` to `out`: step id, attempt, attempt base, dispatched_at,
-- parent count, then (parent, output) pairs.
local function push_payload(out, step, parents_csv)
  local ps = split(parents_csv, ',')
  out[#out + 1] = step
  out[#out + 1] = sget(step, 'attempt') or '0'
  out[#out + 1] = sget(step, 'base') or '0'
  out[#out + 1] = sget(step, 'dispatched_at') or '0'
  out[#out + 1] = tostring(#ps)
  for _, p in ipairs(ps) do
    out[#out + 1] = p
    out[#out + 1] = sget(p, 'output') or 'null'
  end
end

-- The number of a step's next attempt: numbering goes on across retries and re-runs of a run, so a
-- late result of an earlier attempt can never pass for a new one.
local function next_attempt(step)
  return (tonumber(sget(step, 'attempt')) or 0) + 1
end

local function dispatch(step, attempt)
  sset(step, 'status', 'dispatched', 'attempt', tostring(attempt), 'dispatched_at', tostring(NOW))
  event('step', step, attempt, 'dispatched', '')
end

-- Dispatches every step of `specs` ('step=p1,p2;step2=p1') that is pending and whose parents have
-- all succeeded, appending its payload to `out`. Returns how many were dispatched.
local function dispatch_ready(out, specs)
  local n = 0
  for _, spec in ipairs(split(specs, ';')) do
    local eq = string.find(spec, '=', 1, true)
    local step, parents = string.sub(spec, 1, eq - 1), string.sub(spec, eq + 1)
    if sget(step, 'status') == 'pending' then
      local ready = true
      for _, p in ipairs(split(parents, ',')) do
        if sget(p, 'status') ~= 'succeeded' then ready = false break end
      end
      if ready then
        dispatch(step, next_attempt(step))
        push_payload(out, step, parents)
        n = n + 1
      end
    end
  end
  return n
end

-- Finishes the run: sets its status, cancels unfinished steps, and starts the retention clock.
local function finish_run(status, output, err)
  redis.call('HSET', RUN, 'status', status, 'finished_at', tostring(NOW), 'output', output or '', 'error', err or '')
  for _, s in ipairs(split(redis.call('HGET', RUN, 'step_ids'), ',')) do
    local st = sget(s, 'status')
    if st == 'pending' or st == 'dispatched' or st == 'running' or st == 'retrying' then
      sset(s, 'status', 'cancelled', 'finished_at', tostring(NOW))
      event('step', s, tonumber(sget(s, 'attempt')) or 0, 'cancelled', 'run ' .. status)
    end
  end
  event('run', '', 0, status, err or '')
  redis.call('EXPIRE', RUN, RETENTION)
  redis.call('EXPIRE', STEPS, RETENTION)
  redis.call('EXPIRE', EVENTS, RETENTION)
end

-- Whether the run is of workflow@version `pinned` (what the caller planned with).
local function pinned_to(pinned)
  local wf = redis.call('HMGET', RUN, 'workflow', 'version')
  return (wf[1] or '') .. '@' .. (wf[2] or '') == pinned
end
