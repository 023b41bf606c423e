-- Apply one batch of agent.state events, atomically, to the agents hash.
--
-- KEYS[1]  the agents key prefix, e.g. "cs:{agents}"
-- ARGV[1]  JSON config: {now, dedup_ttl_s, expect: {source -> last offset applied here}}
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
--                since: the ts of the event that began the state)

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local rows = cjson.decode(ARGV[2])
local offsets_key = prefix .. ':offsets'
local seen_prefix = prefix .. ':seen:'
local stored, applied, results = {}, {}, {}
local today = math.floor(cfg.now / 86400000)
local seen_today = seen_prefix .. today
local seen_yesterday = seen_prefix .. (today - 1)
local marked = false

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
      local old = redis.call('HGET', prefix .. ':state', e[4])
      if old then
        local old_state, old_since = string.match(old, '^(%a+)|[^|]*|(%-?%d+)$')
        if old_state ~= nil and old_state == string.match(value, '^(%a+)|') then
          value = string.gsub(value, '|%-?%d+$', '|' .. old_since)  -- same state goes on
        end
      end
      redis.call('HSET', prefix .. ':state', e[4], value)
      results[i] = 'a'
    end
    if (applied[source] or -1) < offset then applied[source] = offset end
  end
end

for source, offset in pairs(applied) do
  redis.call('HSET', offsets_key, source, string.format('%.0f', offset))
end
if marked then
  redis.call('EXPIRE', seen_today, cfg.dedup_ttl_s)
end
return table.concat(results)
