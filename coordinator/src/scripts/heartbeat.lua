-- heartbeat.lua: attempt ARGV[6] of step ARGV[5] is alive. Returns {'proceed'}, {'stale'} or {'cancelled'}.
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
local step, attempt = ARGV[5], tonumber(ARGV[6])
local st = sget(step, 'status')
if tonumber(sget(step, 'attempt')) ~= attempt or (st ~= 'running' and st ~= 'dispatched') then
  return { 'stale' }
end
sset(step, 'heartbeat_at', tostring(NOW))
return { 'proceed' }
