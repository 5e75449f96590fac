-- append_logs.lua: AppendLogs, one round trip: log lines a handler wrote, for the attempt the
-- calling worker holds. Standalone (not prefixed with common.lua); builds no key names.
-- KEYS[1] the run hash, KEYS[2] the steps hash, KEYS[3] the run's live log tail (a stream): all
--         under the run's hash tag (keys.rs `run`, `steps`, `log_tail`).
-- ARGV[1] one JSON object, store.rs `AppendLogsJson` (named fields):
--   step, attempt, worker: the attempt and the worker sending its lines;
--   max_lines, max_bytes: what an attempt keeps (limits.rs MAX_LOG_LINES_PER_ATTEMPT and
--     MAX_LOG_BYTES_PER_ATTEMPT): past either, its oldest lines are dropped;
--   max_run_bytes: what the whole run keeps (MAX_LOG_BYTES_PER_RUN): a line past it is not kept
--     (nor sent live), and counted in the attempt's `log_over`;
--   tail_max: the approximate length of the live tail; tail_ttl_s: its expiry (seconds), renewed
--     by each call (the tail only feeds live watchers).
-- ARGV[2..] the lines, oldest first, each a JSON object {"t": Unix ms, "l": level, "m": message}
--   already checked and cut by the coordinator.
-- Stored in the steps hash (so they expire, persist and are read with the run, as its steps are):
--   `<step>:log@<attempt>#<seq>` a line (seq from 0), `<step>:log_n@<attempt>` lines ever
--   appended, `<step>:log_first@<attempt>` the first kept seq (= lines dropped),
--   `<step>:log_bytes@<attempt>` bytes kept, `<step>:log_over@<attempt>` lines refused at the run's
--   bound, `:log_bytes` the run's bytes kept, and `:log_index`, one `<step>|<attempt>` line per
--   attempt that has logged, in the order they first logged.
-- Returns {'proceed', dropped (the oldest dropped and those refused at the run's bound), kept},
-- {'stale'} (not the current attempt, not running, or held by
-- another worker: nothing is kept) or {'cancelled'} (the run is over: nothing is kept).
local RUN, STEPS, TAIL = KEYS[1], KEYS[2], KEYS[3]
local TERMINAL = { succeeded = true, failed = true, cancelled = true, timed_out = true }
local A = cjson.decode(ARGV[1])
local status = redis.call('HGET', RUN, 'status')
if not status then return { 'stale' } end
if TERMINAL[status] then return { 'cancelled' } end
local step, attempt, worker = A.step, tonumber(A.attempt), A.worker
local f = redis.call('HMGET', STEPS, step .. ':attempt', step .. ':status', step .. ':worker')
if tonumber(f[1]) ~= attempt or f[2] ~= 'running' or worker == '' or f[3] ~= worker then
  return { 'stale' }
end
local sfx = '@' .. tostring(attempt)
local nkey, fkey, bkey = step .. ':log_n' .. sfx, step .. ':log_first' .. sfx, step .. ':log_bytes' .. sfx
local okey = step .. ':log_over' .. sfx
local c = redis.call('HMGET', STEPS, nkey, fkey, bkey, okey, ':log_bytes')
local n, first, bytes = tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0
local over, total = tonumber(c[4]) or 0, tonumber(c[5]) or 0
local max_lines, max_bytes, max_run = tonumber(A.max_lines), tonumber(A.max_bytes), tonumber(A.max_run_bytes)
if #ARGV < 2 then return { 'proceed', tostring(first + over), tostring(n - first) } end
if n == 0 then
  redis.call('HSET', STEPS, ':log_index', (redis.call('HGET', STEPS, ':log_index') or '') .. step .. '|' .. attempt .. '\n')
end
local line_field = step .. ':log' .. sfx .. '#'
-- In memory first: this call's lines by sequence (one dropped within the call is never written),
-- the stored lines to delete; then one HDEL and one HSET.
local new, start, dels = {}, n, {}
for i = 2, #ARGV do
  local line = ARGV[i]
  if total + #line > max_run then
    over = over + 1
  else
    redis.call('XADD', TAIL, 'MAXLEN', '~', A.tail_max, '*', 'step', step, 'attempt', tostring(attempt), 'line', line)
    new[n] = line
    n = n + 1
    bytes, total = bytes + #line, total + #line
    while first < n and (n - first > max_lines or bytes > max_bytes) do
      local size
      if first >= start then
        size = #new[first]
        new[first] = nil
      else
        local old = line_field .. first
        size = redis.call('HSTRLEN', STEPS, old)
        dels[#dels + 1] = old
      end
      bytes, total = bytes - size, total - size
      first = first + 1
    end
  end
end
if #dels > 0 then redis.call('HDEL', STEPS, unpack(dels)) end
local sets = { nkey, n, fkey, first, bkey, bytes, okey, over, ':log_bytes', total }
for seq = math.max(start, first), n - 1 do
  sets[#sets + 1] = line_field .. seq
  sets[#sets + 1] = new[seq]
end
redis.call('HSET', STEPS, unpack(sets))
redis.call('EXPIRE', TAIL, tonumber(A.tail_ttl_s))
return { 'proceed', tostring(first + over), tostring(n - first) }
