-- Caller facts taken by every handler leave the queue's outbox (see apply_queue.lua) for
-- :relayed, where they are kept a while: a Redis server holding callers' keys may come
-- back without its last writes (a replica promoted that lagged), and then they are relayed
-- again to mend what it lost (store.py, RELAYED_KEEP_MS). Boxes taken before
-- prune_before leave :relayed, and with them the marks journey_queue.lua kept for their
-- facts: no relay brings those facts again. One atomic step.
--
-- KEYS[1]  the queue's key prefix
-- ARGV[1]  JSON {boxes: [...] (none: only the pruning, for a queue that takes no facts),
--               now, prune_before (wall ms)}
-- Keys below the prefix:
--   :relayed   hash box -> the box's facts, as :facts held them
--   :relayidx  zset box -> when it left :facts (wall ms)
local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local facts_key, kept_key = prefix .. K.facts, prefix .. K.relayed
local index_key = prefix .. K.relayed_index
-- Boxes pruned per call: a queue prunes on every batch, and once a minute without one.
local PRUNE_LIMIT = 500

local function int(x) return string.format('%.0f', x) end

for _, box in ipairs(cfg.boxes) do
  local held = redis.call('HGET', facts_key, box)
  if held then  -- a box taken twice (the janitor beside a batch) keeps its first time
    redis.call('HSET', kept_key, box, held)
    redis.call('ZADD', index_key, int(cfg.now), box)
  end
end
if #cfg.boxes > 0 then redis.call('HDEL', facts_key, unpack(cfg.boxes)) end

local old = redis.call('ZRANGEBYSCORE', index_key, '-inf', '(' .. int(cfg.prune_before),
                       'LIMIT', 0, PRUNE_LIMIT)
if #old == 0 then return 1 end
local tokens = {}
for _, raw in ipairs(redis.call('HMGET', kept_key, unpack(old))) do
  if raw then
    local entry = cjson.decode(raw)
    if type(entry[1]) == 'string' then entry = {entry} end  -- a fact boxed alone (older)
    for _, f in ipairs(entry) do
      if f[2] == 'queued' then tokens[#tokens + 1] = f[1] end  -- only these were marked
    end
  end
end
redis.call('HDEL', kept_key, unpack(old))
redis.call('ZREM', index_key, unpack(old))
for first = 1, #tokens, 1000 do
  redis.call('SREM', prefix .. K.journey_marks,
             unpack(tokens, first, math.min(first + 999, #tokens)))
end
return 1
