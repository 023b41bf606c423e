-- Callback offers: the caller of a missed-call offer was answered before it was worked.
--
-- KEYS[1]  the queue's key prefix (see cb_emit.lua)
-- ARGV     offer_id, cancel msg_id, cancel payload, now (ms)
-- Closes the offer as cancelled; a message not yet claimed for sending is withdrawn, and
-- one already sent (or on its way) is followed by a cancel. Returns 1 when cancelled.
local p = KEYS[1]
local raw = redis.call('HGET', p .. K.offers, ARGV[1])
if not raw then return 0 end
local offer = cjson.decode(raw)
if not offer.open or #offer.tokens > 0 then return 0 end
offer.open = false
redis.call('HSET', p .. K.offers, ARGV[1], cjson.encode(offer))
redis.call('SREM', p .. K.offers_open, ARGV[1])
redis.call('HINCRBY', p .. K.cb, 'result:cancelled', 1)
local first = ARGV[1] .. ':1'
local unsent = redis.call('HEXISTS', p .. K.out_offers, first) == 1
  and redis.call('HEXISTS', p .. K.claim_offers, first) == 0
if unsent then
  redis.call('HDEL', p .. K.out_offers, first)
  redis.call('ZREM', p .. K.due_offers, first)
else
  redis.call('HSET', p .. K.out_cancels, ARGV[2], ARGV[3])
  redis.call('ZADD', p .. K.due_cancels, ARGV[4], ARGV[2])
end
return 1
