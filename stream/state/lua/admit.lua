-- Admit ids into a bounded index (queues or agents), atomically across instances.
--
-- KEYS[1]  the index: zset id -> wall time (ms) of admission or last batch
-- ARGV[1]  the most ids the index may hold; ARGV[2] now (ms); ARGV[3..] ids
-- Returns the ids refused: new ones that would take the index past its bound.
local index, limit, now = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local size = redis.call('ZCARD', index)
local refused = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if redis.call('ZSCORE', index, id) then
    redis.call('ZADD', index, 'GT', now, id)
  elseif size < limit then
    redis.call('ZADD', index, now, id)
    size = size + 1
  else
    refused[#refused + 1] = id
  end
end
return refused
