-- Read what the spike rule needs of one queue (stream/alerts.py), in one call.
--
-- KEYS[1]  the queue's key prefix (see apply_queue.lua for the window buckets)
-- ARGV[1]  the alert kind
-- ARGV[2]  JSON [[window_s, first_bucket, last_bucket], ...]: the ranges to sum
-- Returns {JSON [{figure: sum}, ...] (one per range), the episode open there or ""}.
-- Keys below the prefix: :alerts (written by alert_move.lua).
local prefix = KEYS[1]
local figures = {'answered', 'abandoned', 'short_abandoned'}
local sums = {}
for i, range in ipairs(cjson.decode(ARGV[2])) do
  local total = {answered = 0, abandoned = 0, short_abandoned = 0}
  for bucket = range[2], range[3] do
    local values = redis.call('HMGET', prefix .. K.window .. range[1] .. ':' .. bucket,
                              unpack(figures))
    for j, figure in ipairs(figures) do
      total[figure] = total[figure] + tonumber(values[j] or '0')
    end
  end
  sums[i] = total
end
return {cjson.encode(sums), redis.call('HGET', prefix .. K.alerts, ARGV[1]) or ''}
