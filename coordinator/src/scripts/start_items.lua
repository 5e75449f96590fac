-- start_items.lua: starts fan-out step ARGV[5], dispatched as attempt ARGV[6], over the element
-- inputs ARGV[10..] (JSON each), at most ARGV[7] at a time.
-- ARGV[8] the step's children spec and ARGV[9] the leaves (as complete_step.lua: a fan-out over no
-- elements succeeds at once with output []).
-- Returns {'stale'} or {'ok', run_status, '', n, then the payloads of the first elements}.
-- Invariants: the elements are stored and the first ones dispatched in one commit; element attempt
-- numbers go on across re-runs, so a late result of an earlier round is stale; after a RetryRun, an
-- element that succeeded before with the same input keeps its result and does not run again.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = ARGV[5], tonumber(ARGV[6])
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'dispatched' then return { 'stale' } end
local total = #ARGV - 9
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
run_started()
if total == 0 then
  sset(step, 'status', 'running', 'started_at', tostring(NOW), 'items_total', '0', 'items_ok', '0',
    'items_failed', '0', 'items_next', '0')
  return step_done(step, attempt, 'succeeded', '[]', '0 elements', ARGV[8], ARGV[9])
end
local kept = 0
for i = 0, total - 1 do
  local item = step .. '#' .. i
  if sget(item, 'status') == 'succeeded' and sget(item, 'input') == ARGV[10 + i] then
    kept = kept + 1
  else
    sset(item, 'status', 'pending', 'input', ARGV[10 + i], 'output', '', 'error', '', 'history', '',
      'base', sget(item, 'attempt') or '0')
  end
end
local out = { 'ok', status, '', '0' }
local n, i = 0, 0
while i < total and n < tonumber(ARGV[7]) do
  local item = step .. '#' .. i
  if sget(item, 'status') == 'pending' then
    dispatch_item(item)
    push_payload(out, item, '')
    n = n + 1
  end
  i = i + 1
end
out[4] = tostring(n)
sset(step, 'status', 'running', 'started_at', tostring(NOW), 'worker', '', 'items_total', tostring(total),
  'items_ok', tostring(kept), 'items_failed', '0', 'items_next', tostring(i))
local detail = total .. ' elements, ' .. ARGV[7] .. ' at a time'
if kept > 0 then detail = detail .. ', ' .. kept .. ' kept from before' end
event('step', step, attempt, 'running', detail)
if kept == total then
  local parts = {}
  for j = 0, total - 1 do parts[#parts + 1] = sget(step .. '#' .. j, 'output') or 'null' end
  return step_done(step, attempt, 'succeeded', '[' .. table.concat(parts, ',') .. ']', detail, ARGV[8], ARGV[9])
end
return out
