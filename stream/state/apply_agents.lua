-- Apply one batch of agent.state events, atomically, to the agents hash.
--
-- KEYS[1]  the agents key prefix, e.g. "cs:{agents}"
-- ARGV[1]  JSON config: {now, dedup_ttl_s}   (now: the wall clock, ms)
-- ARGV[2]  JSON events: [[partition, offset, event_id, agent_id, ts_ms, "state|q1,q2"], ...]
-- Returns one result letter per event (a applied, d duplicate).
--
-- Keys below the prefix:
--   :offsets     hash partition -> last applied offset
--   :seen:<day>  hash event_id -> 1, day of processing (wall clock); an id is looked up
--                in today's and yesterday's hash, so the horizon is at least 24 h whatever
--                the event's ts
--   :state       hash agent_id -> "state|queue,queue,..." (latest applied wins)

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local events = cjson.decode(ARGV[2])
local offsets_key = prefix .. ':offsets'
local seen_prefix = prefix .. ':seen:'
local stored, applied, results = {}, {}, {}
local today = math.floor(cfg.now / 86400000)
local seen_today = seen_prefix .. today
local seen_yesterday = seen_prefix .. (today - 1)
local marked = false

for i, e in ipairs(events) do
  local partition, offset = tostring(e[1]), e[2]
  if stored[partition] == nil then
    stored[partition] = tonumber(redis.call('HGET', offsets_key, partition) or '-1')
  end
  if offset <= stored[partition] then
    results[i] = 'd'
  else
    if redis.call('HEXISTS', seen_yesterday, e[3]) == 1
        or redis.call('HSETNX', seen_today, e[3], 1) == 0 then
      results[i] = 'd'
    else
      marked = true
      redis.call('HSET', prefix .. ':state', e[4], e[6])
      results[i] = 'a'
    end
    if (applied[partition] or -1) < offset then applied[partition] = offset end
  end
end

for partition, offset in pairs(applied) do
  redis.call('HSET', offsets_key, partition, offset)
end
if marked then
  redis.call('EXPIRE', seen_today, cfg.dedup_ttl_s)
end
return table.concat(results)
