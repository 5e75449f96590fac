-- delete_workflow_version.lua: deletes one version of a workflow definition under its delete
-- fence (fence_workflow_version.lua), and drops the fence; the name leaves the set of names with
-- its last version.
-- KEYS[1] the workflow's hash version -> definition JSON; KEYS[2] its hash version -> registered at
-- (Unix ms); KEYS[3] the set of workflow names; KEYS[4] the version's fence.
-- ARGV[1] JSON (store::workflows::DeleteWorkflowArgs): {"name": the workflow's name, "version":
-- the version (a string), "token": the token that holds the fence}.
-- Returns {'lost'} when the fence is not held by the token (it lapsed: a run may have started
-- since the caller counted; nothing changes), {'missing'} when the version is not registered (the
-- fence is dropped), else {'deleted', v1, v2, ...}: the versions the workflow keeps afterwards.
-- Invariant: a version is deleted only under its fence, so no run of it started after the caller
-- counted its unfinished runs; its JSON and registration time go together, and a name is in the
-- set of names exactly while it keeps a version (as put_workflow.lua writes them).
local a = cjson.decode(ARGV[1])
if redis.call('GET', KEYS[4]) ~= a.token then
  return { 'lost' }
end
redis.call('DEL', KEYS[4])
if redis.call('HEXISTS', KEYS[1], a.version) == 0 then
  return { 'missing' }
end
redis.call('HDEL', KEYS[1], a.version)
redis.call('HDEL', KEYS[2], a.version)
local left = redis.call('HKEYS', KEYS[1])
if #left == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SREM', KEYS[3], a.name)
end
local out = { 'deleted' }
for _, v in ipairs(left) do
  out[#out + 1] = v
end
return out
