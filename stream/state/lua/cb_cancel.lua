-- Callback offers: the caller of a missed-call offer was answered before it was worked.
--
-- KEYS[1]  the queue's key prefix (see cb_emit.lua)
-- ARGV     offer_id, cancel msg_id, cancel payload, now (ms)
-- Closes the offer as cancelled; a message not yet claimed for sending is withdrawn, and
-- one already sent (or on its way) is followed by a cancel. Returns 1 when cancelled.
local p = KEYS[1]
local raw = redis.call('HGET', p .. ':offers', ARGV[1])
if not raw then return 0 end
local offer = cjson.decode(raw)
if not offer.open or #offer.tokens > 0 then return 0 end
offer.open = false
redis.call('HSET', p .. ':offers', ARGV[1], cjson.encode(offer))
redis.call('SREM', p .. ':offers:open', ARGV[1])
redis.call('HINCRBY', p .. ':cb', 'result:cancelled', 1)
local first = ARGV[1] .. ':1'
local unsent = redis.call('HEXISTS', p .. ':out:offers', first) == 1
  and redis.call('HEXISTS', p .. ':claim:offers', first) == 0
if unsent then
  redis.call('HDEL', p .. ':out:offers', first)
  redis.call('ZREM', p .. ':due:offers', first)
else
  redis.call('HSET', p .. ':out:cancels', ARGV[2], ARGV[3])
  redis.call('ZADD', p .. ':due:cancels', ARGV[4], ARGV[2])
end
return 1
