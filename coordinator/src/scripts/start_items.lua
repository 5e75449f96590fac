-- start_items.lua: starts a fan-out step, dispatched as `attempt`, over its elements whose inputs
-- stage_items.lua stored.
-- A (ARGV[6], store.rs `StartItemsJson`): step, attempt; max_parallel: elements in flight at most;
-- total: the element count; kept: how many elements kept their result from before (a RetryRun);
-- order: the order in which the others run, '' when none was kept (every element, by index), else
-- their indexes, ORDER_WIDTH digits each; graph: (only after {'no_graph'}) as complete_step.lua's.
-- A fan-out over no elements succeeds at once with output [] (its children dispatched as
-- complete_step.lua does, from the stored graph).
-- Returns {'stale'}, {'no_graph'} (nothing changed: call again with `graph`) or
-- {'ok', run_status, '', n, then the payloads of the first elements}.
-- Invariants: the step starts once (fenced by its dispatched attempt); at most ITEM_BATCH
-- elements are dispatched here, later ones as elements complete; a fan-out whose elements all
-- kept their result completes through its 'items' timer like any other.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = A.step, tonumber(A.attempt)
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'dispatched' then return { 'stale' } end
local total, kept = tonumber(A.total), tonumber(A.kept)
if graph_missing() then return { 'no_graph' } end
redis.call('ZREM', OUTBOX, RUN_ID .. '|' .. step)
run_started()
sset(step, 'status', 'running', 'started_at', tostring(NOW), 'worker', '', 'items_total', tostring(total),
  'items_ok', tostring(kept), 'items_failed', '0', 'items_kept', tostring(kept), 'items_next', '0',
  'items_order', A.order, 'items_parallel', tostring(A.max_parallel), 'items_fresh', '', 'waiting_for', '')
if total == 0 then
  record_attempt(step, attempt, 'succeeded', '', '')
  return step_done(step, attempt, 'succeeded', '[]', '0 elements')
end
local detail = total .. ' elements, ' .. tostring(A.max_parallel) .. ' at a time'
if kept > 0 then detail = detail .. ', ' .. kept .. ' kept from before' end
event('step', step, attempt, 'running', detail)
local out = { 'ok', status, '', '0' }
if kept == total then
  items_done(step, attempt)
  return out
end
out[4] = tostring(dispatch_items(out, step, ITEM_BATCH))
return out
