-- Move one queue's alert episode, and put the message that says so in the queue's
-- outbox, in one atomic step; only if the episode is still the one the decision read.
--
-- KEYS[1]  the queue's key prefix
-- ARGV     kind, expected (the episode read, "" for none), now (the episode after, ""
--          once it resolved), channel, msg_id, message (JSON), due (ms)
-- Returns 1 when moved, 0 when another instance moved it first (nothing written).
-- Keys below the prefix:
--   :alerts               hash kind -> the open episode (its firing message, JSON)
--   :out:<channel>, :due:<channel>  the outbox (see claim_out.lua)
local prefix = KEYS[1]
local kind, expected, now = ARGV[1], ARGV[2], ARGV[3]
local channel, msg_id, message, due = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
if (redis.call('HGET', prefix .. K.alerts, kind) or '') ~= expected then
  return 0
end
if now == '' then
  redis.call('HDEL', prefix .. K.alerts, kind)
else
  redis.call('HSET', prefix .. K.alerts, kind, now)
end
redis.call('HSET', prefix .. K.out .. channel, msg_id, message)
redis.call('ZADD', prefix .. K.due .. channel, due, msg_id)
return 1
