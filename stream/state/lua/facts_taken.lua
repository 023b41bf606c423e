-- Caller facts taken by every handler leave the queue's outbox (see apply_queue.lua), and
-- with them the marks journey_queue.lua kept while they were there, in one atomic step.
-- KEYS[1] the queue's key prefix; ARGV[1] JSON {boxes: [...], tokens: [...]}
local prefix = KEYS[1]
local taken = cjson.decode(ARGV[1])
if #taken.boxes > 0 then redis.call('HDEL', prefix .. K.facts, unpack(taken.boxes)) end
for first = 1, #taken.tokens, 1000 do
  redis.call('SREM', prefix .. K.journey_marks,
             unpack(taken.tokens, first, math.min(first + 999, #taken.tokens)))
end
return 1
