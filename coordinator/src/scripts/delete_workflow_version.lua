-- delete_workflow_version.lua: deletes one version of a workflow definition; the name leaves the
-- set of names with its last version.
-- KEYS[1] the workflow's hash version -> definition JSON; KEYS[2] its hash version -> registered at
-- (Unix ms); KEYS[3] the set of workflow names.
-- ARGV[1] JSON (store::workflows::DeleteWorkflowArgs): {"name": the workflow's name, "version":
-- the version (a string)}.
-- Returns {'missing'} when the version is not registered (nothing changes), else
-- {'deleted', v1, v2, ...}: the versions the workflow keeps afterwards.
-- Invariant: a version's JSON and its registration time go together, and a name is in the set of
-- names exactly while it keeps a version (as put_workflow.lua writes them).
local a = cjson.decode(ARGV[1])
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
