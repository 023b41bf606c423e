-- Housekeeping of one queue that may get no batch for hours (see apply_queue.lua).
--
-- KEYS[1]  the queue's key prefix
-- ARGV[1]  JSON: {now, leg_ttl_ms, idle_ms}   (now: the wall clock, ms)
-- Forgets legs idle past leg_ttl_ms (a waiting call whose end was never seen stops
-- waiting), then, when the queue has had no batch for idle_ms and no call waits, forgets
-- the queue: returns 1 then, 0 otherwise. Its window buckets expire by themselves.
local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])

local stale = redis.call('ZRANGEBYSCORE', prefix .. K.legs_index, '-inf',
                         cfg.now - cfg.leg_ttl_ms, 'LIMIT', 0, 10000)
for _, call_id in ipairs(stale) do
  local queued = redis.call('ZSCORE', prefix .. K.waiting, call_id)
  if queued then
    redis.call('ZREM', prefix .. K.ranked, ranked_member(call_id, tonumber(queued)))
    redis.call('ZREM', prefix .. K.waiting, call_id)
    redis.call('INCR', prefix .. K.waiting_gen)
  end
  redis.call('HDEL', prefix .. K.legs, call_id)
  redis.call('ZREM', prefix .. K.legs_index, call_id)
end
local seen = tonumber(redis.call('GET', prefix .. K.seen) or '0')
if seen > cfg.now - cfg.idle_ms or redis.call('ZCARD', prefix .. K.waiting) > 0 then
  return 0
end
redis.call('DEL', prefix .. K.legs, prefix .. K.legs_index, prefix .. K.waiting,
           prefix .. K.totals, prefix .. K.offsets, prefix .. K.seen,
           prefix .. K.alerts, prefix .. K.waiting_gen, prefix .. K.trend_waiting,
           prefix .. K.ranked, prefix .. K.callback_wait)
return 1
