-- Apply one batch of call events to one queue, atomically (contract §1 rules).
--
-- KEYS[1]  the queue's key prefix, e.g. "cs:{q:sales}" (one hash tag: one Cluster slot)
-- ARGV[1]  JSON config: {now, sla_ms, short_ms, windows: [[window_s, bucket_s], ...],
--                        leg_ttl_ms, dedup_ttl_s, bucket_ttl_extra_s}
-- ARGV[2]  JSON events: [[partition, offset, event_id, kind, call_id, ts_ms, caller, priority], ...]
--          kind: Q queued, I transfer in, A answered, B abandoned, C callback accepted,
--                T transfer out, E ended, K callback attempt
-- Returns a string with one result letter per event:
--   a applied, d duplicate, c conflict, o orphan
--
-- Keys below the prefix (the only place that names them; keys.py names the prefixes):
--   :offsets  hash partition -> last applied offset (redeliveries are skipped exactly)
--   :seen:<day> hash event_id -> 1 (producer duplicates; day of the event ts)
--   :legs     hash call_id -> "state|queued_ms|decided_ms|answered_ms"
--             state W waiting, A answered (handle time running), X closed
--   :legidx   zset call_id -> last touch (ms), to forget legs after leg_ttl_ms
--   :waiting  zset call_id -> queued ts (ms)
--   :waitinfo hash call_id -> "caller|priority"
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
local waitinfo_key = prefix .. ':waitinfo'
local totals_key = prefix .. ':totals'

local applied_offsets = {}
local stored_offsets = {}
local buckets = {}   -- "window:bucket" -> {figure -> increment}
local bucket_order = {}
local totals = {}
local touched = {}
local seen_days = {}
local results = {}
local seen_prefix = prefix .. ':seen:'
local bucket_seconds = {}
for _, w in ipairs(cfg.windows) do bucket_seconds[w[1]] = w[2] end

local function stored_offset(partition)
  local value = stored_offsets[partition]
  if value == nil then
    value = tonumber(redis.call('HGET', offsets_key, partition) or '-1')
    stored_offsets[partition] = value
  end
  return value
end

-- Count a figure in every window's bucket for time ts (and in the totals, for outcomes).
local function count(ts, figure, amount, outcome)
  for _, w in ipairs(cfg.windows) do
    local id = w[1] .. ':' .. math.floor(ts / 1000 / w[2])
    local b = buckets[id]
    if b == nil then
      b = {}
      buckets[id] = b
      bucket_order[#bucket_order + 1] = id
    end
    b[figure] = (b[figure] or 0) + amount
  end
  if outcome then
    totals[figure] = (totals[figure] or 0) + amount
  end
end

local function read_leg(call_id)
  local raw = redis.call('HGET', legs_key, call_id)
  if not raw then return nil end
  local st, q, d, a = string.match(raw, '^(%a)|([%d%.%-]*)|([%d%.%-]*)|([%d%.%-]*)$')
  return {st = st, q = tonumber(q), d = tonumber(d), a = tonumber(a)}
end

local function write_leg(call_id, leg)
  redis.call('HSET', legs_key, call_id,
    leg.st .. '|' .. (leg.q or '') .. '|' .. (leg.d or '') .. '|' .. (leg.a or ''))
  touched[call_id] = true
end

local function stop_waiting(call_id)
  redis.call('ZREM', waiting_key, call_id)
  redis.call('HDEL', waitinfo_key, call_id)
end

local function start_visit(call_id, ts, caller, priority)
  count(ts, 'offered', 1, true)
  write_leg(call_id, {st = 'W', q = ts})
  redis.call('ZADD', waiting_key, ts, call_id)
  redis.call('HSET', waitinfo_key, call_id, (caller or '') .. '|' .. (priority or ''))
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

local function apply(kind, call_id, ts, caller, priority)
  local leg = read_leg(call_id)
  local arriving = (kind == 'Q' or kind == 'I')

  if kind == 'K' then
    return 'a'  -- callback attempts change no queue figure
  end

  if leg == nil then
    if arriving then
      start_visit(call_id, ts, caller, priority)
      return 'a'
    end
    -- A terminal event for a leg never seen: counted without a wait, then closed.
    if kind == 'A' then
      count(ts, 'answered', 1, true)
      write_leg(call_id, {st = 'A', d = ts, a = ts})
    elseif kind == 'B' then
      abandon(ts, nil)
      write_leg(call_id, {st = 'X', d = ts})
    elseif kind == 'C' then
      count(ts, 'callback_accepted', 1, true)
      write_leg(call_id, {st = 'X', d = ts})
    elseif kind == 'T' then
      count(ts, 'transferred_out', 1, true)
      write_leg(call_id, {st = 'X', d = ts})
    else -- 'E'
      write_leg(call_id, {st = 'X', d = ts})
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
      write_leg(call_id, {st = 'A', q = leg.q, d = ts, a = ts})
      return 'a'
    end
    if kind == 'B' or kind == 'E' then
      abandon(ts, wait)
    elseif kind == 'C' then
      count(ts, 'callback_accepted', 1, true)
    else -- 'T': an overflow, counted only as transferred out
      count(ts, 'transferred_out', 1, true)
    end
    write_leg(call_id, {st = 'X', q = leg.q, d = ts, a = leg.a})
    return 'a'
  end

  -- The leg's outcome is decided (answered, or closed).
  if arriving then
    if ts < leg.d then
      count(ts, 'offered', 1, true)  -- its late start: offered, nothing revised
      touched[call_id] = true
    else
      start_visit(call_id, ts, caller, priority)  -- back in the queue: a new visit
    end
    return 'a'
  end
  if leg.st == 'A' and (kind == 'E' or kind == 'T') then
    end_handle(ts, leg)
    if kind == 'T' then count(ts, 'transferred_out', 1, true) end
    write_leg(call_id, {st = 'X', q = leg.q, d = leg.d, a = leg.a})
    return 'a'
  end
  return 'c'
end

for i, e in ipairs(events) do
  local partition, offset = tostring(e[1]), e[2]
  local result
  if offset <= stored_offset(partition) then
    result = 'd'  -- redelivered: this offset was applied before
  else
    local day = math.floor(e[6] / 86400000)
    if redis.call('HSETNX', seen_prefix .. day, e[3], 1) == 0 then
      result = 'd'
    else
      seen_days[day] = true
      local caller, priority = e[7], e[8]
      if caller == cjson.null then caller = nil end
      if priority == cjson.null then priority = nil end
      result = apply(e[4], e[5], e[6], caller, priority)
    end
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

for day, _ in pairs(seen_days) do
  redis.call('EXPIRE', seen_prefix .. day, cfg.dedup_ttl_s)
end

for outcome, amount in pairs(totals) do
  redis.call('HINCRBY', totals_key, outcome, amount)
end

-- Remember when each touched leg was last seen; forget legs idle past the horizon.
for call_id, _ in pairs(touched) do
  redis.call('ZADD', legidx_key, now, call_id)
end
local stale = redis.call('ZRANGEBYSCORE', legidx_key, '-inf', now - cfg.leg_ttl_ms, 'LIMIT', 0, 1000)
for _, call_id in ipairs(stale) do
  redis.call('HDEL', legs_key, call_id)
  stop_waiting(call_id)
  redis.call('ZREM', legidx_key, call_id)
end

return table.concat(results)
