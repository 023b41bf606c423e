-- Confirm messages published (see claim_out.lua): they leave the outbox for good.
-- KEYS[1] the queue's key prefix; ARGV channel, msg_id...
local prefix, channel = KEYS[1], ARGV[1]
for i = 2, #ARGV do
  redis.call('HDEL', prefix .. K.out .. channel, ARGV[i])
  redis.call('ZREM', prefix .. K.due .. channel, ARGV[i])
  redis.call('HDEL', prefix .. K.claim .. channel, ARGV[i])
end
return #ARGV - 1
