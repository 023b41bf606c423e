-- Read one queue's live figures and window sums in one call (snapshot refresh).
--
-- KEYS[1]  the queue's key prefix (see apply_queue.lua for the layout)
-- ARGV[1]  JSON: {now, windows: [[window_s, bucket_s], ...]}
-- Returns JSON: {waiting, oldest_ms, totals: {...}, windows: {"<window_s>": {figure: sum}},
--                callbacks: {"offered:<kind>"|"result:<r>"|"refused:<reason>": n},
--                offers_open,   (callback offers: see cb_emit.lua)
--                waiting_gen}   (raised whenever the waiting list changes)
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
for _, w in ipairs(cfg.windows) do
  local sums = {}
  local first = math.floor((now_s - w[1]) / w[2])
  local last = math.floor(now_s / w[2])
  for bucket = first, last do
    hash_to_table(redis.call('HGETALL', prefix .. ':w:' .. w[1] .. ':' .. bucket), sums)
  end
  windows[tostring(w[1])] = sums
end

local oldest = redis.call('ZRANGE', KEYS[1] .. ':waiting', 0, 0, 'WITHSCORES')
return cjson.encode({
  waiting = redis.call('ZCARD', prefix .. ':waiting'),
  oldest_ms = tonumber(oldest[2] or '-1'),
  totals = hash_to_table(redis.call('HGETALL', prefix .. ':totals'), {}),
  windows = windows,
  callbacks = hash_to_table(redis.call('HGETALL', prefix .. ':cb'), {}),
  offers_open = redis.call('SCARD', prefix .. ':offers:open'),
  waiting_gen = tonumber(redis.call('GET', prefix .. ':wgen') or '0'),
})
