-- Apply one batch of agent.state events, atomically, to the agents hash.
--
-- KEYS[1]  the agents key prefix, e.g. "cs:{agents}"
-- ARGV[1]  JSON config: {now, dedup_ttl_s, windows: [[window_s, bucket_s], ...],
--          bucket_ttl_extra_s, expect: {source -> last offset applied here}}
--          (now: the wall clock, ms)
-- ARGV[2]  JSON rows: [[source, offset, event_id, agent_id, ts_ms, "state|q1,q2"], ...]
--          source: "<topic>:<partition>"
-- Returns one result letter per row (a applied, d duplicate), or, writing nothing,
-- "R" .. JSON {source: stored offset} when the stored offsets are behind `expect` (see
-- apply_queue.lua).
--
-- Keys below the prefix:
--   :offsets     hash source -> last applied offset
--   :seen:<day>  hash event_id -> 1, day of processing (wall clock); an id is looked up
--                in today's and yesterday's hash, so the horizon is at least 24 h whatever
--                the event's ts
--   :state       hash agent_id -> "state|queue,queue,...|since_ms" (latest applied wins;
--                since: the ts of the event that began the state, never earlier than the
--                start of the state before it: an agent's states tile its time)
--   :w:<window_s>:<bucket>  hash "<agent_id>|<state>" -> ms spent in a staffed state
--                (available, busy, wrapup) within the bucket, added when the state ends;
--                a state spanning buckets is split at their edges (the open state is
--                added by the reader, up to now)
--
-- Every row is worked out first; Redis is written only at the end (as apply_queue.lua).

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local rows = cjson.decode(ARGV[2])
local offsets_key = prefix .. K.offsets
local seen_prefix = prefix .. K.seen_day
local stored, applied, results = {}, {}, {}
local today = math.floor(cfg.now / 86400000)
local seen_today = seen_prefix .. today
local seen_yesterday = seen_prefix .. (today - 1)
local marked = false
local states = {}         -- agent_id -> its state value, read once, written at the end
local changed, is_changed = {}, {}  -- agent_ids whose state value changed, in order
local buckets, bucket_order = {}, {}  -- "window:bucket" -> {"agent|state" -> ms}
local staffed = STAFFED
local bucket_seconds = {}
for _, w in ipairs(cfg.windows) do bucket_seconds[w[1]] = w[2] end
-- A state's time older than the longest window and its bucket is read by no window:
-- that bound keeps a state begun decades ago as cheap as any other.
local reach_ms = 0
for _, w in ipairs(cfg.windows) do
  reach_ms = math.max(reach_ms, (w[1] + 2 * w[2]) * 1000)
end

local function read_state(agent)
  local value = states[agent]
  if value == nil then
    value = redis.call('HGET', prefix .. K.state, agent) or false
    states[agent] = value
  end
  return value
end

-- Time in a staffed state, [from, to), split over every window's buckets at their edges.
local function add_time(agent, state, from, to)
  if not staffed[state] then return end
  from = math.max(from, to - reach_ms)
  for _, w in ipairs(cfg.windows) do
    local size = w[2] * 1000
    local t = from
    while t < to do
      local bucket = math.floor(t / size)
      local piece_end = math.min(to, (bucket + 1) * size)
      local id = w[1] .. ':' .. bucket
      local b = buckets[id]
      if b == nil then
        b = {}
        buckets[id] = b
        bucket_order[#bucket_order + 1] = id
      end
      local field = agent .. '|' .. state
      b[field] = (b[field] or 0) + (piece_end - t)
      t = piece_end
    end
  end
end

local function stored_offset(source)
  if stored[source] == nil then
    stored[source] = tonumber(redis.call('HGET', offsets_key, source) or '-1')
  end
  return stored[source]
end

local behind = nil
for source, offset in pairs(cfg.expect or {}) do
  if stored_offset(source) < offset then
    behind = behind or {}
    behind[source] = stored_offset(source)
  end
end
if behind ~= nil then return 'R' .. cjson.encode(behind) end

for i, e in ipairs(rows) do
  local source, offset = e[1], e[2]
  if offset <= stored_offset(source) then
    results[i] = 'd'
  else
    if redis.call('HEXISTS', seen_yesterday, e[3]) == 1
        or redis.call('HSETNX', seen_today, e[3], 1) == 0 then
      results[i] = 'd'
    else
      marked = true
      local value = e[6]
      local old = read_state(e[4])
      if old then
        local old_state, old_since = string.match(old, '^(%a+)|[^|]*|(%-?%d+)$')
        if old_state ~= nil then
          old_since = tonumber(old_since)
          local new_state, queues = string.match(value, '^(%a+)|([^|]*)|')
          if old_state ~= new_state then add_time(e[4], old_state, old_since, e[5]) end
          if old_state == new_state or e[5] < old_since then
            -- the same state goes on; a state applied late begins when the last one began
            value = new_state .. '|' .. queues .. '|' .. string.format('%.0f', old_since)
          end
        end
      end
      if not is_changed[e[4]] then
        changed[#changed + 1] = e[4]
        is_changed[e[4]] = true
      end
      states[e[4]] = value
      results[i] = 'a'
    end
    if (applied[source] or -1) < offset then applied[source] = offset end
  end
end

-- Write what the rows decided.
for _, agent in ipairs(changed) do
  redis.call('HSET', prefix .. K.state, agent, states[agent])
end
for _, id in ipairs(bucket_order) do
  local window = tonumber(string.match(id, '^(%d+):'))
  local key = prefix .. K.window .. id
  for field, ms in pairs(buckets[id]) do
    redis.call('HINCRBY', key, field, string.format('%.0f', ms))
  end
  redis.call('EXPIRE', key, window + 2 * bucket_seconds[window] + cfg.bucket_ttl_extra_s)
end
for source, offset in pairs(applied) do
  redis.call('HSET', offsets_key, source, string.format('%.0f', offset))
end
if marked then
  redis.call('EXPIRE', seen_today, cfg.dedup_ttl_s)
end
return table.concat(results)
