-- Record in one queue's keys what callers' journeys decided about it (contract §2), so
-- the snapshot reads a queue's journey figures from its own slot, cheaply.
--
-- KEYS[1]  the queue's key prefix, e.g. "cs:{q:sales}"
-- ARGV[1]  JSON config: {bucket_ms, day_ms}
-- ARGV[2]  JSON list of [caller, queue_id, token, kind, ts, at, recovery_ms, box]
--          (apply_journey.lua's answers, with their caller first and the outbox entry
--          of their fact last)
--
-- Each kind is recorded once, however often it comes:
--   r     counted only while its fact's box is still in :facts or :relayed and its
--         token not yet in :jmark (the box moves from :facts to :relayed once every
--         handler has taken it, and leaves :relayed, its tokens :jmark with it, when no
--         relay can bring it again: facts_taken.lua); offered calls with a caller (c) are
--         counted by apply_queue.lua
--   m     the caller joins :missed, unless :jdone says this miss is resolved already
--   R, L  resolve the caller's miss at ts: counted unless :jdone holds ts or later, so
--         a resolution that comes before its miss, or twice, counts once; an R for the
--         miss :jdone holds, from an earlier answer, redates that recovery
-- A caller is in one state per queue (contract §2): a new miss, or the resolution of a
-- later miss (misses applied after the answer that recovers them), less than a day after
-- the caller's last resolution here takes that resolution back out of its bucket.
--
-- Keys below the prefix:
--   :missed  zset caller -> ts of the last miss not yet recovered or lost (the callers a
--            supervisor may call back by hand; numbers kept at most 24 h plus a sweep)
--   :jdone   zset caller -> ts of the last miss resolved (recovered or lost); kept until
--            the miss is a day and an hour old
--   :jres    hash caller -> "kind|at|recovery_ms" of that resolution (pruned with :jdone)
--   :jmark   set of the tokens of facts counted here while they are in :facts or :relayed
--   :jw      hash "<bucket>:<figure>" -> count, bucket = floor(ts / bucket_ms); figures:
--            c offered calls with a caller, r repeat calls, R recovered, Rms summed time
--            to recovery (ms), L lost; fields older than a day and a bucket are pruned
--   :jtotal  hash lost -> callers lost since the start (callstream_lost_callers_total)

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local rows = cjson.decode(ARGV[2])
local missed_key, done_key, res_key = prefix .. K.missed, prefix .. K.journey_done, prefix .. K.journey_resolved

local counts, marks, done = {}, {}, {}
local missed = {}   -- caller -> ts of the open miss (NONE: none)
local changed = {}  -- callers whose :missed entry changes
local res = {}      -- caller -> their :jres entry as changed (false: deleted)
local lost = 0
local NONE = -math.huge

local function int(x) return string.format('%.0f', x) end
-- Whether a fact's box is still in the outbox, or kept there since it was taken.
local function held(box)
  return redis.call('HEXISTS', prefix .. K.facts, box) == 1
    or redis.call('HEXISTS', prefix .. K.relayed, box) == 1
end
local function add(at, figure, amount)
  local field = int(math.floor(at / cfg.bucket_ms)) .. ':' .. figure
  counts[field] = (counts[field] or 0) + amount
end
-- A caller's score in a zset, as this call has changed it so far (NONE: not there).
local function score(cache, key, caller)
  local ts = cache[caller]
  if ts == nil then
    ts = tonumber(redis.call('ZSCORE', key, caller)) or NONE
    cache[caller] = ts
  end
  return ts
end
-- The miss this caller last had resolved here, and the one still open.
local function resolved(caller) return score(done, done_key, caller) end
local function open_miss(caller) return score(missed, missed_key, caller) end

-- The caller's last resolution here leaves the recovered or lost of the last day.
local function take_back(caller, ts)
  local last = res[caller]
  if last == nil then last = redis.call('HGET', res_key, caller) end
  if not last then return end
  local kind, at, recovery = string.match(last, '^(%a)|(%-?%d+)|(%d+)$')
  at = tonumber(at)
  if at > ts - cfg.day_ms then
    add(at, kind, -1)
    if kind == 'R' then add(at, 'Rms', -tonumber(recovery)) end
  end
  res[caller] = false
end

-- The caller's last recovery here (of the miss at ts) came from a later answer than this.
local function redate(caller, ts, at, recovery)
  local last = res[caller]
  if last == nil then last = redis.call('HGET', res_key, caller) end
  if not last then return end
  local kind, old_at = string.match(last, '^(%a)|(%-?%d+)|')
  if kind ~= 'R' or tonumber(old_at) <= at then return end
  take_back(caller, ts)
  res[caller] = 'R|' .. int(at) .. '|' .. int(math.max(0, recovery))
  add(at, 'R', 1)
  add(at, 'Rms', math.max(0, recovery))
end

for _, e in ipairs(rows) do
  local caller, token, kind, ts, at, recovery = e[1], e[3], e[4], e[5], e[6], e[7]
  if kind == 'r' then
    if not marks[token] and held(e[8])
        and redis.call('SISMEMBER', prefix .. K.journey_marks, token) == 0 then
      marks[token] = true
      add(ts, 'r', 1)
    end
  elseif kind == 'm' then
    if resolved(caller) < ts and open_miss(caller) < ts then
      if open_miss(caller) == NONE then take_back(caller, ts) end
      missed[caller] = ts
      changed[caller] = true
    end
  elseif kind == 'R' and resolved(caller) == ts and open_miss(caller) < ts then
    redate(caller, ts, at, recovery)
  elseif resolved(caller) < ts and open_miss(caller) > ts then
    done[caller] = ts  -- an older miss resolved late: the caller is missed again since
  elseif resolved(caller) < ts then
    take_back(caller, ts)  -- a later miss of the caller resolved: it replaces the last
    done[caller] = ts
    if open_miss(caller) <= ts then
      missed[caller] = NONE
      changed[caller] = true
    end
    res[caller] = kind .. '|' .. int(at) .. '|' .. int(math.max(0, recovery))
    if kind == 'R' then
      add(at, 'R', 1)
      add(at, 'Rms', math.max(0, recovery))
    else
      add(at, 'L', 1)
      lost = lost + 1
    end
  end
end

for token in pairs(marks) do redis.call('SADD', prefix .. K.journey_marks, token) end
for caller in pairs(changed) do
  if missed[caller] == NONE then
    redis.call('ZREM', missed_key, caller)
  else
    redis.call('ZADD', missed_key, int(missed[caller]), caller)
  end
end
for caller, ts in pairs(done) do
  if ts ~= NONE then redis.call('ZADD', done_key, int(ts), caller) end
end
for caller, entry in pairs(res) do
  if entry then
    redis.call('HSET', res_key, caller, entry)
  else
    redis.call('HDEL', res_key, caller)
  end
end
for field, amount in pairs(counts) do redis.call('HINCRBY', prefix .. K.journey_window, field, amount) end
if lost > 0 then redis.call('HINCRBY', prefix .. K.journey_total, 'lost', lost) end
return 'ok'
