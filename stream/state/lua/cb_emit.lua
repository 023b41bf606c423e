-- Callback offers, the queue's side: make the offer, or refuse it for max_pending, in
-- the same atomic step as its outbox message (see publish_once.py) and its counts.
--
-- KEYS[1]  the queue's key prefix
-- ARGV[1]  JSON {offer_id, msg_id, kind, call_id, caller, member (its :cbwait member, or
--          ""), need_waiting, max_pending, payload, due, at (when what triggered it
--          happened: the offer counts in the window buckets then), windows,
--          bucket_ttl_extra_s}
-- Keys below the prefix:
--   :offers       hash offer_id -> JSON {call_id, caller, kind, attempt, payload, open,
--                 tokens (attempt events taken)}
--   :offers:open  set of open offer_ids (callback_max_pending)
--   :cb           hash "offered:<kind>" / "result:<result>" / "refused:<reason>" -> n
--   :cbrefused    hash offer_id -> reason (a refusal is counted once)
--   :out:offers, :due:offers   the outbox
-- Returns "ok" (made now or before), "moot" (the call no longer waits) or "max_pending".
local p = KEYS[1]
local a = cjson.decode(ARGV[1])
local function settle()
  if a.member ~= '' then redis.call('ZREM', p .. K.callback_wait, a.member) end
end
if redis.call('HEXISTS', p .. K.offers, a.offer_id) == 1 then
  settle()
  return 'ok'
end
if a.need_waiting and not redis.call('ZSCORE', p .. K.waiting, a.call_id) then
  settle()
  return 'moot'
end
if redis.call('SCARD', p .. K.offers_open) >= a.max_pending then
  settle()
  if redis.call('HSETNX', p .. K.callback_refused, a.offer_id, 'max_pending') == 1 then
    redis.call('EXPIRE', p .. K.callback_refused, 90000)
    redis.call('HINCRBY', p .. K.cb, 'refused:max_pending', 1)
    redis.call('HINCRBY', p .. K.cb, 'result:refused', 1)
  end
  return 'max_pending'
end
redis.call('HSET', p .. K.offers, a.offer_id, cjson.encode({
  call_id = a.call_id, caller = a.caller, kind = a.kind, attempt = 1,
  payload = a.payload, open = true, tokens = {}}))
redis.call('SADD', p .. K.offers_open, a.offer_id)
redis.call('HSET', p .. K.out_offers, a.msg_id, a.payload)
redis.call('ZADD', p .. K.due_offers, a.due, a.msg_id)
redis.call('HINCRBY', p .. K.cb, 'offered:' .. a.kind, 1)
redis.call('HINCRBY', p .. K.totals, 'callback_offered', 1)
local second = math.floor(a.at / 1000)
for _, w in ipairs(a.windows) do
  local key = p .. K.window .. w[1] .. ':' .. math.floor(second / w[2])
  redis.call('HINCRBY', key, 'callback_offered', 1)
  redis.call('EXPIRE', key, w[1] + 2 * w[2] + a.bucket_ttl_extra_s)
end
settle()
return 'ok'
