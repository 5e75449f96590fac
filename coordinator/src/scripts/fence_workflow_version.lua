-- fence_workflow_version.lua: takes, renews or drops the delete fence of one workflow version.
-- While the fence stands, create_run.lua refuses new runs of the version ({'no_version'}), so that
-- a delete can count the version's unfinished runs and know that none starts behind its back.
-- KEYS[1] the workflow's hash version -> definition JSON; KEYS[2] the version's fence
-- ({<ns>}:wf:<name>:deleting:<version>, a string holding the deleting call's token, with a lease).
-- ARGV[1] JSON (store::workflows::FenceArgs): {"op": "take" | "renew" | "drop", "version": the
-- version (a string), "token": the deleting call's token, "lease_ms": how long the fence stands
-- unless renewed (ms, 1 or more)}.
-- Returns, for take: {'fenced'}, {'missing'} (no such version: nothing changes) or {'busy'}
-- (another delete holds the fence); for renew: {'renewed'} or {'lost'} (the fence is not ours any
-- more: it lapsed); for drop: {'dropped'} (whether or not it was ours: another's is left alone).
-- Invariant: a fence is only renewed or dropped by the token that took it.
local a = cjson.decode(ARGV[1])
local lease = math.max(1, tonumber(a.lease_ms))
if a.op == 'take' then
  if redis.call('HEXISTS', KEYS[1], a.version) == 0 then
    return { 'missing' }
  end
  if redis.call('SET', KEYS[2], a.token, 'NX', 'PX', lease) then
    return { 'fenced' }
  end
  return { 'busy' }
elseif a.op == 'renew' then
  if redis.call('GET', KEYS[2]) == a.token then
    redis.call('PEXPIRE', KEYS[2], lease)
    return { 'renewed' }
  end
  return { 'lost' }
elseif a.op == 'drop' then
  if redis.call('GET', KEYS[2]) == a.token then
    redis.call('DEL', KEYS[2])
  end
  return { 'dropped' }
end
return redis.error_reply('fence_workflow_version.lua: no op ' .. tostring(a.op))
