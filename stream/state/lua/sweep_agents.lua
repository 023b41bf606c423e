-- Forget agents offline for longer than the horizon (contract §1 "Bounded").
-- KEYS[1]  the agents key prefix; ARGV[1] the cut-off (ms): offline since before it.
-- Returns the agent ids forgotten.
local state_key, index_key = KEYS[1] .. K.state, KEYS[1] .. K.index
local cutoff = tonumber(ARGV[1])
local flat = redis.call('HGETALL', state_key)
local gone = {}
for i = 1, #flat, 2 do
  local state, since = string.match(flat[i + 1], '^(%a+)|[^|]*|(%-?%d+)$')
  if state == 'offline' and tonumber(since) < cutoff then
    redis.call('HDEL', state_key, flat[i])
    redis.call('ZREM', index_key, flat[i])
    gone[#gone + 1] = flat[i]
  end
end
return gone
