-- Callback offers: a refusal by policy, counted once per offer by reason.
-- KEYS[1] the queue's key prefix; ARGV offer_id, reason, member (its :cbwait member or "")
local p = KEYS[1]
if ARGV[3] ~= '' then redis.call('ZREM', p .. K.callback_wait, ARGV[3]) end
if redis.call('HEXISTS', p .. K.offers, ARGV[1]) == 1 then return 0 end
if redis.call('HSETNX', p .. K.callback_refused, ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', p .. K.callback_refused, 90000)
redis.call('HINCRBY', p .. K.cb, 'refused:' .. ARGV[2], 1)
redis.call('HINCRBY', p .. K.cb, 'result:refused', 1)
return 1
