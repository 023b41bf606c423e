-- Apply one batch of agent.state events, atomically, to the agents hash.
--
-- KEYS[1]  the agents key prefix, e.g. "cs:{agents}"
-- ARGV[1]  JSON config: {dedup_ttl_s}
-- ARGV[2]  JSON events: [[partition, offset, event_id, agent_id, ts_ms, "state|q1,q2"], ...]
-- Returns one result letter per event (a applied, d duplicate).
--
-- Keys below the prefix:
--   :offsets     hash partition -> last applied offset
--   :seen:<day>  hash event_id -> 1
--   :state       hash agent_id -> "state|queue,queue,..." (latest applied wins)

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local events = cjson.decode(ARGV[2])
local offsets_key = prefix .. ':offsets'
local seen_prefix = prefix .. ':seen:'
local stored, applied, seen_days, results = {}, {}, {}, {}

for i, e in ipairs(events) do
  local partition, offset = tostring(e[1]), e[2]
  if stored[partition] == nil then
    stored[partition] = tonumber(redis.call('HGET', offsets_key, partition) or '-1')
  end
  if offset <= stored[partition] then
    results[i] = 'd'
  else
    local day = math.floor(e[5] / 86400000)
    if redis.call('HSETNX', seen_prefix .. day, e[3], 1) == 0 then
      results[i] = 'd'
    else
      seen_days[day] = true
      redis.call('HSET', prefix .. ':state', e[4], e[6])
      results[i] = 'a'
    end
    if (applied[partition] or -1) < offset then applied[partition] = offset end
  end
end

for partition, offset in pairs(applied) do
  redis.call('HSET', offsets_key, partition, offset)
end
for day, _ in pairs(seen_days) do
  redis.call('EXPIRE', seen_prefix .. day, cfg.dedup_ttl_s)
end
return table.concat(results)
