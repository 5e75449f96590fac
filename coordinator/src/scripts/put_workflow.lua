-- put_workflow.lua: registers one version of a workflow definition, unless that version exists or
-- the workflow already keeps its most versions.
-- KEYS[1] the workflow's hash version -> definition JSON; KEYS[2] its hash version -> registered at
-- (Unix ms); KEYS[3] the set of workflow names.
-- ARGV[1] JSON (store::workflows::PutWorkflowArgs): {"name": the workflow's name, "version": its
-- version (a string), "definition": the definition JSON, "now": Unix ms, "max_versions": most
-- versions kept}.
-- Returns {'exists', stored JSON} when the version is registered already (nothing changes),
-- {'full', count} when the workflow keeps max_versions versions already (nothing changes), else
-- {'created'}.
-- Invariant: a workflow never holds more than max_versions versions, and a version's JSON, its
-- registration time and the name's membership are written together.
local a = cjson.decode(ARGV[1])
local stored = redis.call('HGET', KEYS[1], a.version)
if stored then
  return { 'exists', stored }
end
local count = redis.call('HLEN', KEYS[1])
if count >= tonumber(a.max_versions) then
  return { 'full', tostring(count) }
end
redis.call('HSET', KEYS[1], a.version, a.definition)
redis.call('HSET', KEYS[2], a.version, string.format('%.0f', a.now))
redis.call('SADD', KEYS[3], a.name)
return { 'created' }
