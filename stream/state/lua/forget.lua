-- Drop ids from an index, unless a batch touched them since the cut-off.
-- KEYS[1] the index zset; ARGV[1] cut-off (ms); ARGV[2..] ids. Returns how many went.
local gone = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) < tonumber(ARGV[1]) then
    gone = gone + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return gone
