-- Callback offers, the caller's side: give back a reservation (the queue refused the
-- offer), or forget a missed-call offer once worked or cancelled.
-- KEYS[1] the caller's key prefix; ARGV offer_id, call_id ("" to keep the reservation)
redis.call('HDEL', KEYS[1] .. K.caller_missed, ARGV[1])
if ARGV[2] ~= '' then
  redis.call('ZREM', KEYS[1] .. K.caller_offers, ARGV[1])
  local held = redis.call('HGET', KEYS[1] .. K.caller_calls, ARGV[2])
  if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
    redis.call('HDEL', KEYS[1] .. K.caller_calls, ARGV[2])
  end
end
return 1
