-- emit_done.lua: applies an 'emit_done' effect (store.rs `Effect::EmitDone`): a run that an
-- emitting step started has finished. Not a run script: its keys are the emitting (parent) run's.
-- KEYS[1] the parent's steps hash, KEYS[2] the emitting step's set of children counted as done
-- (keys.rs `emit_done`), KEYS[3] the timers.
-- ARGV[1] the child run, ARGV[2] the emitting step, ARGV[3] the field it counts in
-- ('emit_succeeded' or 'emit_failed'), ARGV[4] now (Unix ms), ARGV[5] the 'emit' timer to arm.
-- Returns 1 when counted now, 0 when counted before or the parent is gone.
-- Invariant: a child is counted once, however often the effect is applied; the emitting step is
-- then looked at again (its 'emit' timer, due now).
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local counted = 0
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], ARGV[2] .. ':' .. ARGV[3], 1)
  counted = 1
end
redis.call('ZADD', KEYS[3], tonumber(ARGV[4]), ARGV[5])
return counted
