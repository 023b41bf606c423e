-- Callback offers: the waiting calls whose wait crossed the queue's threshold.
--
-- KEYS[1]  the queue's key prefix
-- ARGV     now (ms), lease (ms), limit
-- :cbwait  zset "caller|queued_ms|call_id" -> when the wait reaches callback_wait_seconds
--          (written by apply_queue.lua for a waiting call with a caller; gone when it
--          stops waiting). A crossing handed out here is leased: it comes back after the
--          lease unless cb_emit.lua or cb_refuse.lua settled it.
-- Returns the members that crossed.
local key = KEYS[1] .. K.callback_wait
local now, lease = tonumber(ARGV[1]), tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
for _, member in ipairs(due) do
  redis.call('ZADD', key, now + lease, member)
end
return due
