-- Apply one batch of call events to one queue, atomically (contract §1 rules).
--
-- KEYS[1]  the queue's key prefix, e.g. "cs:{q:sales}" (one hash tag: one Cluster slot)
-- ARGV[1]  JSON config: {now, sla_ms, short_ms, windows: [[window_s, bucket_s], ...],
--                        leg_ttl_ms, bucket_ttl_extra_s}
-- ARGV[2]  JSON events: [[partition, offset, event_id, kind, call_id, ts_ms, caller, priority], ...]
--          kind: Q queued, I transfer in, A answered, B abandoned, C callback accepted,
--                T transfer out, E ended, K callback attempt
-- Returns a string with one result letter per event:
--   a applied, d duplicate, c conflict, o orphan
--
-- Keys below the prefix (the only place that names them; keys.py names the prefixes):
--   :offsets  hash partition -> last applied offset (redeliveries are skipped exactly)
--   :legs     hash call_id -> "state|queued|decided|answered|caller|priority|hour|ids"
--             state W waiting, A answered (handle time running), X closed; times in ms;
--             hour: the hour of the last legidx entry; ids: the leg's event ids, each
--             followed by NUL (a producer's duplicate of any of them changes nothing)
--   :legidx   zset call_id -> a time (ms) at most 1 h before the leg's last touch;
--             legs idle past leg_ttl_ms are forgotten
--   :waiting  zset call_id -> queued ts (ms)
--   :w:<window_s>:<bucket> hash figure -> count (bucket = floor(ts_ms / 1000 / bucket_s))
--   :totals   hash outcome -> count (monotonic, for callstream_calls_total)

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local events = cjson.decode(ARGV[2])
local now = cfg.now

local offsets_key = prefix .. ':offsets'
local legs_key = prefix .. ':legs'
local legidx_key = prefix .. ':legidx'
local waiting_key = prefix .. ':waiting'
local totals_key = prefix .. ':totals'

local applied_offsets = {}
local stored_offsets = {}
local buckets = {}   -- "window:bucket" -> {figure -> increment}
local bucket_order = {}
local totals = {}
local results = {}
local hour = math.floor(now / 3600000)
local bucket_seconds = {}
for _, w in ipairs(cfg.windows) do bucket_seconds[w[1]] = w[2] end
local slots_second, slots = nil, nil

local function stored_offset(partition)
  local value = stored_offsets[partition]
  if value == nil then
    value = tonumber(redis.call('HGET', offsets_key, partition) or '-1')
    stored_offsets[partition] = value
  end
  return value
end

-- The bucket tables (one per window) that time ts falls in; events come in runs of
-- nearby times, so the last second's answer is kept.
local function slots_for(ts)
  local second = math.floor(ts / 1000)
  if second ~= slots_second then
    slots_second, slots = second, {}
    for i, w in ipairs(cfg.windows) do
      local id = w[1] .. ':' .. math.floor(second / w[2])
      local b = buckets[id]
      if b == nil then
        b = {}
        buckets[id] = b
        bucket_order[#bucket_order + 1] = id
      end
      slots[i] = b
    end
  end
  return slots
end

-- Count a figure in every window's bucket for time ts (and in the totals, for outcomes).
local function count(ts, figure, amount, outcome)
  for _, b in ipairs(slots_for(ts)) do
    b[figure] = (b[figure] or 0) + amount
  end
  if outcome then
    totals[figure] = (totals[figure] or 0) + amount
  end
end

local function read_leg(call_id)
  local raw = redis.call('HGET', legs_key, call_id)
  if not raw then return nil end
  local st, q, d, a, caller, priority, h, ids = string.match(raw,
    '^(%a)|([%d%-]*)|([%d%-]*)|([%d%-]*)|([%d%+]*)|([%d%-]*)|(%d*)|(.*)$')
  return {st = st, q = tonumber(q), d = tonumber(d), a = tonumber(a), caller = caller,
          priority = priority, hour = tonumber(h), ids = ids}
end

-- Write the leg with the event id it has just applied; index it for forgetting at most
-- once an hour.
local function write_leg(call_id, leg, old, event_id)
  local ids = (old and old.ids or '') .. event_id .. '\0'
  if old == nil or old.hour ~= hour then
    redis.call('ZADD', legidx_key, now, call_id)
  end
  redis.call('HSET', legs_key, call_id, leg.st .. '|' .. (leg.q or '') .. '|' ..
    (leg.d or '') .. '|' .. (leg.a or '') .. '|' .. (leg.caller or '') .. '|' ..
    (leg.priority or '') .. '|' .. hour .. '|' .. ids)
end

local function stop_waiting(call_id)
  redis.call('ZREM', waiting_key, call_id)
end

local function start_visit(call_id, ts, caller, priority, old, event_id)
  count(ts, 'offered', 1, true)
  write_leg(call_id, {st = 'W', q = ts, caller = caller, priority = priority}, old, event_id)
  redis.call('ZADD', waiting_key, ts, call_id)
end

-- A wait or handle time that comes out negative counts as 0.
local function span(from, to)
  if to < from then return 0 end
  return to - from
end

local function abandon(ts, wait)
  count(ts, 'abandoned', 1, true)
  if wait ~= nil then
    count(ts, 'abandoned_waited', 1, false)
    if wait < cfg.short_ms then count(ts, 'short_abandoned', 1, true) end
  end
end

local function end_handle(ts, leg)
  if leg.a ~= nil then
    count(ts, 'handled', 1, false)
    count(ts, 'handle_ms', span(leg.a, ts), false)
  end
end

local function apply(event_id, kind, call_id, ts, caller, priority)
  local leg = read_leg(call_id)
  if leg ~= nil and string.find(leg.ids, event_id .. '\0', 1, true) then
    return 'd'  -- a producer's duplicate of an event this leg has applied
  end
  local arriving = (kind == 'Q' or kind == 'I')

  if kind == 'K' then
    if leg ~= nil then write_leg(call_id, leg, leg, event_id) end
    return 'a'  -- callback attempts change no queue figure
  end

  if leg == nil then
    if arriving then
      start_visit(call_id, ts, caller, priority, nil, event_id)
      return 'a'
    end
    -- A terminal event for a leg never seen: counted without a wait, then closed.
    if kind == 'A' then
      count(ts, 'answered', 1, true)
      write_leg(call_id, {st = 'A', d = ts, a = ts}, nil, event_id)
    else
      if kind == 'B' then
        abandon(ts, nil)
      elseif kind == 'C' then
        count(ts, 'callback_accepted', 1, true)
      elseif kind == 'T' then
        count(ts, 'transferred_out', 1, true)
      end
      write_leg(call_id, {st = 'X', d = ts}, nil, event_id)
    end
    return 'o'
  end

  if leg.st == 'W' then
    if arriving then return 'c' end
    local wait = span(leg.q, ts)
    stop_waiting(call_id)
    if kind == 'A' then
      count(ts, 'answered', 1, true)
      count(ts, 'answered_waited', 1, false)
      count(ts, 'wait_ms', wait, false)
      if wait <= cfg.sla_ms then count(ts, 'answered_in_sla', 1, true) end
      write_leg(call_id, {st = 'A', q = leg.q, d = ts, a = ts, caller = leg.caller}, leg,
                event_id)
      return 'a'
    end
    if kind == 'B' or kind == 'E' then
      abandon(ts, wait)
    elseif kind == 'C' then
      count(ts, 'callback_accepted', 1, true)
    else -- 'T': an overflow, counted only as transferred out
      count(ts, 'transferred_out', 1, true)
    end
    write_leg(call_id, {st = 'X', q = leg.q, d = ts, caller = leg.caller}, leg, event_id)
    return 'a'
  end

  -- The leg's outcome is decided (answered, or closed).
  if arriving then
    if ts < leg.d then
      count(ts, 'offered', 1, true)  -- its late start: offered, nothing revised
      write_leg(call_id, leg, leg, event_id)
    else
      start_visit(call_id, ts, caller, priority, leg, event_id)  -- back: a new visit
    end
    return 'a'
  end
  if leg.st == 'A' and (kind == 'E' or kind == 'T') then
    end_handle(ts, leg)
    if kind == 'T' then count(ts, 'transferred_out', 1, true) end
    leg.st = 'X'
    write_leg(call_id, leg, leg, event_id)
    return 'a'
  end
  write_leg(call_id, leg, leg, event_id)  -- a conflict: remembered, so a copy is a duplicate
  return 'c'
end

for i, e in ipairs(events) do
  local partition, offset = tostring(e[1]), e[2]
  local result
  if offset <= stored_offset(partition) then
    result = 'd'  -- redelivered: this offset was applied before
  else
    local caller, priority = e[7], e[8]
    if caller == cjson.null then caller = nil end
    if priority == cjson.null then priority = nil end
    result = apply(e[3], e[4], e[5], e[6], caller, priority)
    if (applied_offsets[partition] or -1) < offset then applied_offsets[partition] = offset end
  end
  results[i] = result
end

for partition, offset in pairs(applied_offsets) do
  redis.call('HSET', offsets_key, partition, offset)
end

for _, id in ipairs(bucket_order) do
  local window = tonumber(string.match(id, '^(%d+):'))
  local key = prefix .. ':w:' .. id
  for figure, amount in pairs(buckets[id]) do
    redis.call('HINCRBY', key, figure, amount)
  end
  redis.call('EXPIRE', key, window + 2 * bucket_seconds[window] + cfg.bucket_ttl_extra_s)
end

for outcome, amount in pairs(totals) do
  redis.call('HINCRBY', totals_key, outcome, amount)
end

-- Forget legs idle past the horizon.
local stale = redis.call('ZRANGEBYSCORE', legidx_key, '-inf', now - cfg.leg_ttl_ms, 'LIMIT', 0, 1000)
for _, call_id in ipairs(stale) do
  redis.call('HDEL', legs_key, call_id)
  stop_waiting(call_id)
  redis.call('ZREM', legidx_key, call_id)
end

return table.concat(results)
