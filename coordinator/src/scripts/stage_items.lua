-- stage_items.lua: stores one batch of a fan-out step's element inputs before the step starts
-- (start_items.lua), so that no call handles more than one batch (store::ITEM_BATCH elements).
-- A (ARGV[6], store.rs `StageItemsJson`): step, attempt (its dispatched attempt), first: the index
-- of the batch's first element.
-- ARGV[7..] the inputs (JSON each) of elements first, first + 1, ... (beside A: not escaped twice).
-- Returns {'stale'} or {'ok', kept}: kept is the comma-separated indexes of the batch's elements
-- that succeeded before with the same input and keep their result (after a RetryRun).
-- Invariants: only the dispatched attempt of a live run stages; staging a batch twice (the
-- sweeper re-sends a dispatch) writes the same; an element that runs again keeps its attempt
-- numbers (as its base), so a late result of an earlier round is stale; after a re-run (the step
-- is marked `items_fresh`) nothing is kept.
local status = redis.call('HGET', RUN, 'status')
if not status or TERMINAL[status] then return { 'stale' } end
local step, attempt = A.step, tonumber(A.attempt)
if tonumber(sget(step, 'attempt')) ~= attempt or sget(step, 'status') ~= 'dispatched' then return { 'stale' } end
local fresh = sget(step, 'items_fresh') == '1'
local first = tonumber(A.first)
local kept = {}
for j = 7, #ARGV do
  local i = first + j - 7
  local item = step .. '#' .. i
  if not fresh and sget(item, 'status') == 'succeeded' and sget(item, 'input') == ARGV[j] then
    kept[#kept + 1] = tostring(i)
  else
    sset(item, 'status', 'pending', 'input', ARGV[j], 'output', '', 'error', '', 'history', '',
      'history_dropped', '0', 'base', sget(item, 'attempt') or '0')
  end
end
return { 'ok', table.concat(kept, ',') }
