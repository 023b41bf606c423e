-- Callback offers: what the telephony side reported of an attempt (contract §3 retries).
--
-- KEYS[1]  the queue's key prefix (see cb_emit.lua)
-- ARGV[1]  JSON {offer_id, token, result, max_attempts, retry_msg_id, retry_payload,
--          retry_due}
-- An answered attempt closes the offer as reached; another result sends the offer again
-- (retry_payload, due at retry_due) until max_attempts attempts in all, then closes it
-- as unreached. Each attempt event is taken once. Returns "reached", "retry",
-- "unreached", or "" when there is nothing to do.
local p = KEYS[1]
local a = cjson.decode(ARGV[1])
local raw = redis.call('HGET', p .. K.offers, a.offer_id)
if not raw then return '' end
local offer = cjson.decode(raw)
for _, token in ipairs(offer.tokens) do
  if token == a.token then return '' end
end
if not offer.open then return '' end
offer.tokens[#offer.tokens + 1] = a.token
local outcome
if a.result == 'answered' then
  outcome = 'reached'
elseif offer.attempt >= a.max_attempts then
  outcome = 'unreached'
else
  outcome = 'retry'
  offer.attempt = offer.attempt + 1
  redis.call('HSET', p .. K.out_offers, a.retry_msg_id, a.retry_payload)
  redis.call('ZADD', p .. K.due_offers, a.retry_due, a.retry_msg_id)
end
if outcome ~= 'retry' then
  offer.open = false
  redis.call('SREM', p .. K.offers_open, a.offer_id)
  redis.call('HINCRBY', p .. K.cb, 'result:' .. outcome, 1)
end
redis.call('HSET', p .. K.offers, a.offer_id, cjson.encode(offer))
return outcome
