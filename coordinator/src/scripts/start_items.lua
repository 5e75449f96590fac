-- start_items.lua: starts fan-out step ARGV[5], dispatched as attempt ARGV[6], over ARGV[10]
-- elements whose inputs stage_items.lua stored, at most ARGV[7] at a time.
-- ARGV[8] the step's children spec and ARGV[9] the leaves (as complete_step.lua: a fan-out over no
-- elements succeeds at once with output []); ARGV[10] the element count; ARGV[11] how many
-- elements kept their result from before (a RetryRun); ARGV[12] the order in which the others
-- run: '' when none was kept (every element, by index), else their indexes, ORDER_WIDTH digits each.
-- Returns {'stale'} or {'ok', run_status, '', n, then the payloads of the first elements}.
-- Invariants: the step starts once (fenced by its dispatched attempt); at most ITEM_BATCH
-- elements are dispatched here, later ones as elements complete; a fan-out whose elements all
-- kept their result completes through its 'items' timer like any other.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = ARGV[5], tonumber(ARGV[6])
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'dispatched' then return { 'stale' } end
local total, kept = tonumber(ARGV[10]), tonumber(ARGV[11])
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
run_started()
sset(step, 'status', 'running', 'started_at', tostring(NOW), 'worker', '', 'items_total', tostring(total),
  'items_ok', tostring(kept), 'items_failed', '0', 'items_kept', tostring(kept), 'items_next', '0',
  'items_order', ARGV[12], 'items_parallel', ARGV[7], 'items_fresh', '', 'waiting_for', '')
if total == 0 then
  record_attempt(step, attempt, 'succeeded', '', '')
  return step_done(step, attempt, 'succeeded', '[]', '0 elements', ARGV[8], ARGV[9])
end
local detail = total .. ' elements, ' .. ARGV[7] .. ' at a time'
if kept > 0 then detail = detail .. ', ' .. kept .. ' kept from before' end
event('step', step, attempt, 'running', detail)
local out = { 'ok', status, '', '0' }
if kept == total then
  items_done(step, attempt)
  return out
end
out[4] = tostring(dispatch_items(out, step, ITEM_BATCH))
return out
