-- complete_step.lua: the outcome of attempt ARGV[5] of step ARGV[4], reported by worker ARGV[6] or
-- found by a timer.
-- ARGV[7] outcome: 'ok' | 'error' | 'timeout' (start-to-close) | 'heartbeat' (heartbeat timeout)
-- ARGV[8] the output JSON ('ok') or the error message
-- ARGV[9] when to dispatch the next attempt (Unix ms), or '0' to fail the step for good
--         (the coordinator decided this from the step's retry policy before calling)
-- ARGV[10] for 'heartbeat': the heartbeat timeout (ms); the attempt is alive if it beat more recently
-- ARGV[11] children of the step with their parents: 'c1=p1,p2;c2=p1'
-- ARGV[12] the workflow's leaf steps, comma-separated (their outputs make the run output)
-- ARGV[13] 'workflow@version' the coordinator planned with; anything else is answered stale
-- Returns {'stale'}; {'alive', last_heartbeat_ms}; {'retry', next_attempt}; {'failed'};
-- or {'ok', run_status, run_input, n, then per dispatched child a payload (see push_payload)}.
-- Invariants: only the current attempt of a live step counts (fencing); a child is dispatched exactly
-- once, when its last parent succeeds; the run finishes when its last step does.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] or not pinned_to(ARGV[13]) then return { 'stale' } end
local step, attempt, worker, outcome = ARGV[4], tonumber(ARGV[5]), ARGV[6], ARGV[7]
if tonumber(sget(step, 'attempt')) ~= attempt then return { 'stale' } end
local st = sget(step, 'status')
if outcome == 'timeout' or outcome == 'heartbeat' then
  if st ~= 'running' then return { 'stale' } end
elseif st ~= 'dispatched' and st ~= 'running' then
  return { 'stale' }
end
if outcome == 'heartbeat' then
  local last = tonumber(sget(step, 'heartbeat_at')) or 0
  if NOW - last < tonumber(ARGV[10]) then return { 'alive', tostring(last) } end
end

if outcome == 'ok' then
  record_attempt(step, attempt, 'succeeded', '', worker)
  sset(step, 'status', 'succeeded', 'output', ARGV[8], 'finished_at', tostring(NOW))
  event('step', step, attempt, 'succeeded', '')
  local left = redis.call('HINCRBY', RUN, 'steps_left', -1)
  local out = { 'ok', '', redis.call('HGET', RUN, 'input'), '0' }
  local n = dispatch_ready(out, ARGV[11])
  out[4] = tostring(n)
  if left <= 0 then
    local parts = {}
    for _, leaf in ipairs(split(ARGV[12], ',')) do
      parts[#parts + 1] = cjson.encode(leaf) .. ':' .. (sget(leaf, 'output') or 'null')
    end
    finish_run('succeeded', '{' .. table.concat(parts, ',') .. '}', '')
    out[2] = 'succeeded'
  else
    out[2] = status
  end
  return out
end

local word = (outcome == 'error') and 'failed' or 'timed_out'
local message = ARGV[8]
record_attempt(step, attempt, word, message, worker)
local retry_at = tonumber(ARGV[9])
if retry_at > 0 then
  sset(step, 'status', 'retrying', 'attempt', tostring(attempt + 1), 'error', message,
    'retry_at', tostring(retry_at))
  event('step', step, attempt, 'retrying', message)
  return { 'retry', tostring(attempt + 1) }
end
sset(step, 'status', 'failed', 'error', message, 'finished_at', tostring(NOW))
event('step', step, attempt, 'failed', message)
finish_run('failed', '', 'step ' .. step .. ' failed after ' .. attempt .. ' attempt(s): ' .. message)
return { 'failed' }
