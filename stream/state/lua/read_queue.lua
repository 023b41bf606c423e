-- Read one queue's live figures and window sums in one call (snapshot refresh).
--
-- KEYS[1]  the queue's key prefix (see apply_queue.lua for the layout)
-- ARGV[1]  JSON: {now, windows: [[window_s, bucket_s], ...], trend: window_s}
--          (trend: the window whose buckets are also returned one by one, for sparklines)
-- Returns JSON: {waiting, oldest_ms, totals: {...}, windows: {"<window_s>": {figure: sum}},
--                callbacks: {"offered:<kind>"|"result:<r>"|"refused:<reason>": n},
--                offers_open,   (callback offers: see cb_emit.lua)
--                trend: [[bucket_start_s, {figure: count}], ...] (oldest first),
--                waited: {"<minute>": calls waiting then},
--                waiting_gen}   (raised whenever the waiting list changes)
-- It also notes the calls waiting now under this minute (:trend:waiting, the last 70
-- minutes), so the waiting calls' recent history survives restarts and is the same on
-- every instance.
-- A window holds the buckets from the one holding now - window to the one holding now.

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local now_s = cfg.now / 1000

local function hash_to_table(flat, into)
  for i = 1, #flat, 2 do
    into[flat[i]] = (into[flat[i]] or 0) + tonumber(flat[i + 1])
  end
  return into
end

local windows = {}
local trend = {}
for _, w in ipairs(cfg.windows) do
  local sums = {}
  local first = math.floor((now_s - w[1]) / w[2])
  local last = math.floor(now_s / w[2])
  for bucket = first, last do
    local flat = redis.call('HGETALL', prefix .. K.window .. w[1] .. ':' .. bucket)
    hash_to_table(flat, sums)
    if w[1] == cfg.trend then trend[#trend + 1] = {bucket * w[2], hash_to_table(flat, {})} end
  end
  windows[tostring(w[1])] = sums
end

local waiting = redis.call('ZCARD', prefix .. K.waiting)
local minute = math.floor(now_s / 60)
local history = prefix .. K.trend_waiting
redis.call('HSET', history, minute, waiting)
redis.call('HDEL', history, minute - 70, minute - 71, minute - 72)
redis.call('EXPIRE', history, 7200)

local oldest = redis.call('ZRANGE', KEYS[1] .. K.waiting, 0, 0, 'WITHSCORES')
return cjson.encode({
  waiting = waiting,
  oldest_ms = tonumber(oldest[2] or '-1'),
  totals = hash_to_table(redis.call('HGETALL', prefix .. K.totals), {}),
  windows = windows,
  callbacks = hash_to_table(redis.call('HGETALL', prefix .. K.cb), {}),
  offers_open = redis.call('SCARD', prefix .. K.offers_open),
  trend = trend,
  waited = hash_to_table(redis.call('HGETALL', history), {}),
  waiting_gen = tonumber(redis.call('GET', prefix .. K.waiting_gen) or '0'),
})
