-- start_items.lua: starts fan-out step ARGV[5], dispatched as attempt ARGV[6], over the element
-- inputs ARGV[10..] (JSON each), at most ARGV[7] at a time.
-- ARGV[8] the step's children spec and ARGV[9] the leaves (as complete_step.lua: a fan-out over no
-- elements succeeds at once with output []).
-- Returns {'stale'} or {'ok', run_status, '', n, then the payloads of the first elements}.
-- Invariants: the elements are stored and the first ones dispatched in one commit; element attempt
-- numbers go on across re-runs, so a late result of an earlier round is stale.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = ARGV[5], tonumber(ARGV[6])
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'dispatched' then return { 'stale' } end
local total = #ARGV - 9
local first = math.min(total, tonumber(ARGV[7]))
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
sset(step, 'status', 'running', 'started_at', tostring(NOW), 'worker', '', 'items_total', tostring(total),
  'items_ok', '0', 'items_failed', '0', 'items_next', tostring(first))
event('step', step, attempt, 'running', total .. ' elements, ' .. first .. ' at a time')
run_started()
if total == 0 then
  return step_done(step, attempt, 'succeeded', '[]', '0 elements', ARGV[8], ARGV[9])
end
for i = 0, total - 1 do
  local item = step .. '#' .. i
  sset(item, 'status', 'pending', 'input', ARGV[10 + i], 'output', '', 'error', '', 'history', '',
    'base', sget(item, 'attempt') or '0')
end
local out = { 'ok', status, '', tostring(first) }
for i = 0, first - 1 do
  local item = step .. '#' .. i
  dispatch_item(item)
  push_payload(out, item, '')
end
return out
