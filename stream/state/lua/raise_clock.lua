-- The clock=event "now": the newest applied event time (ms) of any instance.
-- KEYS[1] the clock key; ARGV[1] this batch's newest event time.
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
