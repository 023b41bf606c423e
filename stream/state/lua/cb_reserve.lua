-- Callback offers, the caller's side: one offer per call, ever; at most `cap` offers
-- per caller per 24 h. Idempotent: the same offer asked again is "ok" again.
--
-- KEYS[1]  the caller's key prefix, e.g. "cs:{c:442079460000}"
-- ARGV     offer_id, call_id, queue_id, kind, now (ms), cap, ttl (s)
-- Keys below the prefix:
--   :cb:offers  zset offer_id -> when it was made (the 24 h cap)
--   :cb:calls   hash call_id -> "offer_id|queue_id" (one offer per call)
--   :cb:missed  hash offer_id -> queue_id: missed-call offers not yet worked (cancels)
-- Returns "ok", "already_offered" or "caller_cap".
local p = KEYS[1]
local offer_id, call_id, queue_id, kind = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, cap, ttl = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local mine = offer_id .. '|' .. queue_id
local held = redis.call('HGET', p .. K.caller_calls, call_id)
if held then
  if held == mine then return 'ok' end
  return 'already_offered'
end
redis.call('ZREMRANGEBYSCORE', p .. K.caller_offers, '-inf', now - 86400000)
if redis.call('ZCARD', p .. K.caller_offers) >= cap then return 'caller_cap' end
redis.call('ZADD', p .. K.caller_offers, now, offer_id)
redis.call('HSET', p .. K.caller_calls, call_id, mine)
if kind == 'missed_call' then redis.call('HSET', p .. K.caller_missed, offer_id, queue_id) end
for _, suffix in ipairs({K.caller_offers, K.caller_calls, K.caller_missed}) do
  redis.call('EXPIRE', p .. suffix, ttl)
end
return 'ok'
