-- put_workflow.lua: registers one version of a workflow definition, unless that version exists or
-- the workflow already keeps its most versions.
-- KEYS[1] the workflow's hash version -> definition JSON; KEYS[2] its hash version -> registered at
-- (Unix ms); KEYS[3] the set of workflow names.
-- ARGV[1] version, ARGV[2] definition JSON, ARGV[3] now (Unix ms), ARGV[4] most versions kept,
-- ARGV[5] the workflow's name.
-- Returns {'exists', stored JSON} when the version is registered already (nothing changes),
-- {'full', count} when the workflow keeps ARGV[4] versions already (nothing changes), else {'created'}.
-- Invariant: a workflow never holds more than ARGV[4] versions, and a version's JSON, its
-- registration time and the name's membership are written together.
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  return { 'exists', stored }
end
local count = redis.call('HLEN', KEYS[1])
if count >= tonumber(ARGV[4]) then
  return { 'full', tostring(count) }
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[5])
return { 'created' }
