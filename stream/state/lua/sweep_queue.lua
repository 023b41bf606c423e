-- Housekeeping of one queue that may get no batch for hours (see apply_queue.lua).
--
-- KEYS[1]  the queue's key prefix
-- ARGV[1]  JSON: {now, leg_ttl_ms, idle_ms}   (now: the wall clock, ms)
-- Forgets legs idle past leg_ttl_ms (a waiting call whose end was never seen stops
-- waiting), then, when the queue has had no batch for idle_ms and no call waits, forgets
-- the queue: returns 1 then, 0 otherwise. Its window buckets expire by themselves.
local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])

-- A waiting call's :ranked member, as apply_queue.lua writes it.
local function ranked_member(call_id, ts)
  if ts < 0 then
    return '0' .. string.gsub(string.format('%018.0f', -ts), '%d',
                              function(d) return 9 - d end) .. '|' .. call_id
  end
  return '1' .. string.format('%018.0f', ts) .. '|' .. call_id
end

local stale = redis.call('ZRANGEBYSCORE', prefix .. ':legidx', '-inf',
                         cfg.now - cfg.leg_ttl_ms, 'LIMIT', 0, 10000)
for _, call_id in ipairs(stale) do
  local queued = redis.call('ZSCORE', prefix .. ':waiting', call_id)
  if queued then
    redis.call('ZREM', prefix .. ':ranked', ranked_member(call_id, tonumber(queued)))
    redis.call('ZREM', prefix .. ':waiting', call_id)
    redis.call('INCR', prefix .. ':wgen')
  end
  redis.call('HDEL', prefix .. ':legs', call_id)
  redis.call('ZREM', prefix .. ':legidx', call_id)
end
local seen = tonumber(redis.call('GET', prefix .. ':seen') or '0')
if seen > cfg.now - cfg.idle_ms or redis.call('ZCARD', prefix .. ':waiting') > 0 then
  return 0
end
redis.call('DEL', prefix .. ':legs', prefix .. ':legidx', prefix .. ':waiting',
           prefix .. ':totals', prefix .. ':offsets', prefix .. ':seen',
           prefix .. ':alerts', prefix .. ':wgen', prefix .. ':trend:waiting',
           prefix .. ':ranked', prefix .. ':cbwait')
return 1
