-- One queue's journey figures over the last day (contract §2), and its upkeep.
--
-- KEYS[1]  the queue's key prefix (keys named in journey_queue.lua)
-- ARGV[1]  JSON config: {now, day_ms, bucket_ms, sums (false: only the due misses),
--                        prune (also drop what is past the day)}
-- Returns JSON {missed, c, r, R, Rms, L, lost_total, due: [caller, miss_ts, ...]}: sums
-- of the :jw buckets from the one holding now - day to the one holding now, and the misses now a day old
-- (each may be lost: the caller's journey decides).

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local oldest = math.floor((cfg.now - cfg.day_ms) / cfg.bucket_ms)
local newest = math.floor(cfg.now / cfg.bucket_ms)
local edge = cfg.now - cfg.day_ms
local out = {c = 0, r = 0, R = 0, Rms = 0, L = 0}

local flat = {}
if cfg.sums or cfg.prune then flat = redis.call('HGETALL', prefix .. K.journey_window) end
local stale = {}
for i = 1, #flat, 2 do
  local bucket, figure = string.match(flat[i], '^(%-?%d+):(%a+)$')
  bucket = tonumber(bucket)
  if bucket < oldest then
    stale[#stale + 1] = flat[i]
  elseif bucket <= newest then
    out[figure] = out[figure] + tonumber(flat[i + 1])
  end
end
out.missed = redis.call('ZCOUNT', prefix .. K.missed, '(' .. string.format('%.0f', edge),
                        '+inf')
out.lost_total = tonumber(redis.call('HGET', prefix .. K.journey_total, 'lost') or '0')
out.due = redis.call('ZRANGEBYSCORE', prefix .. K.missed, '-inf',
                     string.format('%.0f', edge), 'WITHSCORES', 'LIMIT', 0, 1000)

if cfg.prune then
  if #stale > 0 then redis.call('HDEL', prefix .. K.journey_window, unpack(stale)) end
  local past = string.format('%.0f', edge - 3600000)
  local gone = redis.call('ZRANGEBYSCORE', prefix .. K.journey_done, '-inf', past)
  for i = 1, #gone, 1000 do
    redis.call('HDEL', prefix .. K.journey_resolved, unpack(gone, i, math.min(i + 999, #gone)))
  end
  redis.call('ZREMRANGEBYSCORE', prefix .. K.journey_done, '-inf', past)
end
return cjson.encode(out)
