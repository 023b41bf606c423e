-- Apply one batch of call events to one queue, atomically (contract §1 rules).
--
-- KEYS[1]  the queue's key prefix, e.g. "cs:{q:sales}" (one hash tag: one Cluster slot)
-- ARGV[1]  JSON config: {now, sla_ms, short_ms, windows: [[window_s, bucket_s], ...],
--                        leg_ttl_ms, bucket_ttl_extra_s, facts (keep caller facts?),
--                        cb_wait_ms (the callback wait threshold, or null: off),
--                        reach: {"<window_s>": seconds its buckets must reach back, where
--                        longer than the window (the alert baseline)},
--                        jw_bucket_ms (the bucket of the journey counts, journey_queue.lua),
--                        expect: {source -> the last offset this instance applied here}}
-- ARGV[2]  JSON rows: [[source, offset, token, kind, call_id, ts_ms, caller, priority,
--                      agent_id, result?], ...]  result: a callback attempt's only
--          source: "<topic>:<partition>"; token: the event's dedup token (its id, marked
--          by the row's role); kind: Q queued, I transfer in, A answered, B abandoned,
--          C callback accepted, T transfer out, E ended, K callback attempt
-- Returns a string with one result letter per row: a applied, d duplicate, c conflict,
-- o orphan; then, when any leg with a caller changed, a newline and the JSON list of
-- those caller facts (below), as the outbox holds them. Two refusals write nothing at all:
--   "R" .. JSON {source: stored offset}  the stored offsets are behind `expect`: this
--        Redis lost writes it had acknowledged (a failover, an AOF cut); read them again
--   error "CSAPPLY <row> <why>"  row <row> (1-based) cannot be applied
--
-- Every row is worked out first, against tables in this script; Redis is written only
-- once every row has been, so a script that fails writes nothing.
--
-- Keys below the prefix (the only place that names them; keys.py names the prefixes):
--   :offsets  hash source -> last applied offset (redeliveries are skipped exactly)
--   :legs     hash call_id ->
--             "state|queued|decided|answered|caller|priority|agent|hour|tokens"
--             state W waiting, A answered (handle time running), X closed; times in ms;
--             agent: the agent who answered;
--             hour: the hour of the last legidx entry; tokens: the dedup tokens of the
--             events the leg applied, each between NULs ("\0t1\0t2\0"; records written
--             before had no leading NUL)
--   :legidx   zset call_id -> a time (ms) at most 1 h before the leg's last touch;
--             legs idle past leg_ttl_ms are forgotten
--   :waiting  zset call_id -> queued ts (ms)
--   :ranked   zset "<queued ts, 19 sortable digits>|call_id" -> -priority (0: none): the
--             same calls in the order they are answered (higher priority, then earlier
--             ts, then call_id): a call's position is its rank (the API reads it)
--   :wgen     string: a counter raised whenever the waiting list changes (the API's
--             index of where calls wait re-reads only the queues whose counter moved)
--   :w:<window_s>:<bucket> hash figure -> count (bucket = floor(ts_ms / 1000 / bucket_s));
--             per agent also "answered|<agent_id>", "handled|<agent_id>" and
--             "handle_ms|<agent_id>" (the answering agent's legs; summed over queues on read)
--   :totals   hash outcome -> count (monotonic, for callstream_calls_total)
--   :seen     string: the wall time (ms) of the last batch, for forgetting idle queues
--   :cbwait   zset "caller|queued_ms|call_id" -> when its wait reaches cb_wait_ms: the
--             waiting calls with a caller, for wait-threshold callback offers (cb_due.lua)
--   :facts    hash box -> JSON list of [token, what, call_id, ts, caller, wait_ms]: what
--             the legs with a caller did in one call of this script (queued, answered,
--             abandoned, accepted; reached: a callback attempt for the leg was answered),
--             kept until the callers' own keys (other slots) have taken it: an outbox,
--             written here in the same atomic step as the state it describes; box: the
--             token of its first fact
--   :jw       hash "<bucket>:c" -> offered calls with a caller (contract §2 journeys; the
--             other journey counts are journey_queue.lua's)
--
-- Within one call, a leg's moves in and out of the waiting sets are netted: a call that
-- waits and is answered within the batch (a replay, a catch-up) touches none of them.

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local rows = cjson.decode(ARGV[2])
local now = cfg.now

local offsets_key = prefix .. K.offsets
local legs_key = prefix .. K.legs
local legidx_key = prefix .. K.legs_index
local waiting_key = prefix .. K.waiting
local totals_key = prefix .. K.totals
local ranked_key = prefix .. K.ranked

local stored_offsets = {}
local applied_offsets = {}
-- The window buckets' largest common unit (s): figures are counted by it, then summed
-- into every window's buckets once at the end (a batch's rows share their units, and
-- an event counts several figures).
local unit = 0
for _, w in ipairs(cfg.windows) do
  local a, b = w[2], unit
  while b ~= 0 do a, b = b, a % b end
  unit = a
end
local unit_ms = unit * 1000
local units = {}     -- unit number -> {figure -> increment}
local totals = {}
local results = {}
local legs = {}      -- call_id -> leg (false: no leg), read once, written at the end
local touched = {}   -- call_ids whose leg changed, in order
local raw_legs = {}  -- call_id -> its stored record (false: none), read in one go
local was_waiting = {}  -- call_id -> {q, caller, priority} of a leg waiting when read
local moved = {}     -- call_ids whose waiting may have changed, in order (no repeats)
local facts = {}     -- caller facts, in order
local offered_with_caller = {}  -- journey bucket -> offered calls with a caller
local hour = math.floor(now / 3600000)

local function stored_offset(source)
  local value = stored_offsets[source]
  if value == nil then
    value = tonumber(redis.call('HGET', offsets_key, source) or '-1')
    stored_offsets[source] = value
  end
  return value
end

-- The sums (figure -> increment) held at number n of a table, made on first use.
local function sums_at(by_number, n)
  local sums = by_number[n]
  if sums == nil then
    sums = {}
    by_number[n] = sums
  end
  return sums
end

-- Count a figure at time ts (and in the totals, for outcomes).
local function count(ts, figure, amount, outcome)
  local sums = sums_at(units, math.floor(ts / unit_ms))
  sums[figure] = (sums[figure] or 0) + amount
  if outcome then
    totals[figure] = (totals[figure] or 0) + amount
  end
end

local function read_leg(call_id)
  local leg = legs[call_id]
  if leg ~= nil then return leg or nil end
  local raw = raw_legs[call_id]  -- every row's leg was read before phase 1
  if not raw then
    legs[call_id] = false
    return nil
  end
  local st, q, d, a, caller, priority, agent, h, tokens = string.match(raw,
    '^(%a)|(%-?%d*)|(%-?%d*)|(%-?%d*)|(%d*)|(%-?%d*)|([%w_%.:%-]*)|(%d*)|(.*)$')
  if st == nil then  -- written before legs kept their agent
    st, q, d, a, caller, priority, h, tokens = string.match(raw,
      '^(%a)|(%-?%d*)|(%-?%d*)|(%-?%d*)|%+?(%d*)|(%-?%d*)|(%d*)|(.*)$')
    agent = ''
  end
  if st == nil then error('unreadable leg record') end
  leg = {st = st, q = tonumber(q), d = tonumber(d), a = tonumber(a), priority = tonumber(priority),
         hour = tonumber(h), stored_hour = tonumber(h), tokens = tokens}
  if caller ~= '' then leg.caller = caller end
  if agent ~= '' then leg.agent = agent end
  if tokens ~= '' and string.byte(tokens, 1) ~= 0 then leg.tokens = '\0' .. tokens end
  if st == 'W' then
    was_waiting[call_id] = {q = leg.q, caller = leg.caller, priority = leg.priority}
  end
  legs[call_id] = leg
  return leg
end

local function has_token(leg, token)
  return string.find(leg.tokens, '\0' .. token .. '\0', 1, true) ~= nil
end

-- Record the leg's new state with the token of the event it has just applied.
local function write_leg(call_id, leg, old, token)
  leg.tokens = (old and old.tokens or '\0') .. token .. '\0'
  leg.stored_hour = old and old.stored_hour
  legs[call_id] = leg
  touched[#touched + 1] = call_id
end

-- The leg's waiting may change: its sets are brought in line once, at the end.
local function may_move(call_id)
  if not moved[call_id] then
    moved[call_id] = true
    moved[#moved + 1] = call_id
  end
end

-- What a leg with a caller did, for the caller's journey and callback offers.
local function fact(token, what, call_id, ts, caller, wait)
  if cfg.facts and caller ~= nil then
    facts[#facts + 1] = {token, what, call_id, ts, caller, wait or cjson.null}
    if what == 'queued' then
      local bucket = math.floor(ts / cfg.jw_bucket_ms)
      offered_with_caller[bucket] = (offered_with_caller[bucket] or 0) + 1
    end
  end
end

local function cb_member(call_id, leg)
  if cfg.cb_wait_ms and leg.caller then
    return leg.caller .. '|' .. string.format('%.0f', leg.q) .. '|' .. call_id
  end
  return nil
end

local function start_visit(call_id, ts, caller, priority, old, token)
  count(ts, 'offered', 1, true)
  local leg = {st = 'W', q = ts, caller = caller, priority = priority}
  write_leg(call_id, leg, old, token)
  fact(token, 'queued', call_id, ts, caller, nil)
  may_move(call_id)
end

-- A wait or handle time that comes out negative counts as 0; none is longer than a
-- leg is remembered, whatever times a producer sends.
local function span(from, to)
  if to < from then return 0 end
  return math.min(to - from, cfg.leg_ttl_ms)
end

local function abandon(ts, wait)
  count(ts, 'abandoned', 1, true)
  if wait ~= nil then
    count(ts, 'abandoned_waited', 1, false)
    if wait < cfg.short_ms then count(ts, 'short_abandoned', 1, true) end
  end
end

-- The agent's own figures (contract §2 "Per agent") sit beside the queue's, in its buckets.
local function count_agent_answered(ts, agent)
  if agent ~= nil then count(ts, 'answered|' .. agent, 1, false) end
end

local function end_handle(ts, leg)
  if leg.a ~= nil then
    local handle = span(leg.a, ts)
    count(ts, 'handled', 1, false)
    count(ts, 'handle_ms', handle, false)
    if leg.agent ~= nil then  -- the answering agent's, whichever agent the end names
      count(ts, 'handled|' .. leg.agent, 1, false)
      count(ts, 'handle_ms|' .. leg.agent, handle, false)
    end
  end
end

local function apply(token, kind, call_id, ts, caller, priority, agent, result)
  if type(ts) ~= 'number' or type(call_id) ~= 'string' then error('bad row') end
  local leg = read_leg(call_id)
  if leg ~= nil and has_token(leg, token) then
    return 'd'  -- a producer's duplicate of an event this leg has applied
  end
  local arriving = (kind == 'Q' or kind == 'I')

  if kind == 'K' then
    if leg ~= nil then
      write_leg(call_id, leg, leg, token)
      if result == 'answered' then fact(token, 'reached', call_id, ts, leg.caller, nil) end
    end
    return 'a'  -- callback attempts change no queue figure
  end

  if leg == nil then
    if arriving then
      start_visit(call_id, ts, caller, priority, nil, token)
      return 'a'
    end
    -- A terminal event for a leg never seen: counted without a wait, then closed.
    if kind == 'A' then
      count(ts, 'answered', 1, true)
      count_agent_answered(ts, agent)
      write_leg(call_id, {st = 'A', d = ts, a = ts, agent = agent}, nil, token)
    else
      if kind == 'B' then
        abandon(ts, nil)
      elseif kind == 'C' then
        count(ts, 'callback_accepted', 1, true)
      elseif kind == 'T' then
        count(ts, 'transferred_out', 1, true)
      end
      write_leg(call_id, {st = 'X', d = ts}, nil, token)
    end
    return 'o'
  end

  if leg.st == 'W' then
    if arriving then return 'c' end
    local wait = span(leg.q, ts)
    may_move(call_id)
    if kind == 'A' then
      count(ts, 'answered', 1, true)
      count_agent_answered(ts, agent)
      count(ts, 'answered_waited', 1, false)
      count(ts, 'wait_ms', wait, false)
      if wait <= cfg.sla_ms then count(ts, 'answered_in_sla', 1, true) end
      write_leg(call_id, {st = 'A', q = leg.q, d = ts, a = ts, caller = leg.caller,
                          priority = leg.priority, agent = agent}, leg, token)
      fact(token, 'answered', call_id, ts, leg.caller, wait)
      return 'a'
    end
    if kind == 'B' or kind == 'E' then
      abandon(ts, wait)
      fact(token, 'abandoned', call_id, ts, leg.caller, wait)
    elseif kind == 'C' then
      count(ts, 'callback_accepted', 1, true)
      fact(token, 'accepted', call_id, ts, leg.caller, wait)
    else -- 'T': an overflow, counted only as transferred out
      count(ts, 'transferred_out', 1, true)
    end
    write_leg(call_id, {st = 'X', q = leg.q, d = ts, caller = leg.caller,
                        priority = leg.priority}, leg, token)
    return 'a'
  end

  -- The leg's outcome is decided (answered, or closed).
  if arriving then
    if ts < leg.d then
      count(ts, 'offered', 1, true)  -- its late start: offered, nothing revised
      write_leg(call_id, leg, leg, token)
    else
      start_visit(call_id, ts, caller, priority, leg, token)  -- back: a new visit
    end
    return 'a'
  end
  if leg.st == 'A' and (kind == 'E' or kind == 'T') then
    end_handle(ts, leg)
    if kind == 'T' then count(ts, 'transferred_out', 1, true) end
    leg.st = 'X'
    write_leg(call_id, leg, leg, token)
    return 'a'
  end
  write_leg(call_id, leg, leg, token)  -- a conflict: remembered, so a copy is a duplicate
  return 'c'
end

-- A Redis that lost writes it had acknowledged must not be written on top of.
local behind = nil
for source, offset in pairs(cfg.expect or {}) do
  local stored = stored_offset(source)
  if stored < offset then
    behind = behind or {}
    behind[source] = stored
  end
end
if behind ~= nil then return 'R' .. cjson.encode(behind) end

-- Phase 1: work out every row; nothing is written to Redis yet.
local wanted, seen_ids = {}, {}
for _, e in ipairs(rows) do
  local call_id = e[5]
  if type(call_id) == 'string' and not seen_ids[call_id] then
    seen_ids[call_id] = true
    wanted[#wanted + 1] = call_id
  end
end
for first = 1, #wanted, 1000 do
  local last = math.min(first + 999, #wanted)
  local found = redis.call('HMGET', legs_key, unpack(wanted, first, last))
  for i = first, last do raw_legs[wanted[i]] = found[i - first + 1] end
end

local row = 0
local ok, failure = pcall(function()
  for i, e in ipairs(rows) do
    row = i
    local source, offset = e[1], e[2]
    if type(source) ~= 'string' or type(offset) ~= 'number' then error('bad position') end
    if offset <= stored_offset(source) then
      results[i] = 'd'  -- redelivered: this offset was applied before
    else
      local caller, priority = e[7], e[8]
      if caller == cjson.null then caller = nil end
      if priority == cjson.null then priority = nil end
      if caller ~= nil and not string.match(caller, '^%d+$') then error('bad caller') end
      if priority ~= nil and (type(priority) ~= 'number' or priority ~= math.floor(priority)
          or math.abs(priority) > 2147483648) then
        error('bad priority')
      end
      local agent = e[9]
      if agent == cjson.null then agent = nil end
      results[i] = apply(e[3], e[4], e[5], e[6], caller, priority, agent, e[10])
      if (applied_offsets[source] or -1) < offset then applied_offsets[source] = offset end
    end
  end
end)
if not ok then
  return redis.error_reply('CSAPPLY ' .. row .. ' ' .. tostring(failure))
end

-- Phase 2: write what phase 1 decided.
local function int(x) return string.format('%.0f', x) end

for source, offset in pairs(applied_offsets) do
  redis.call('HSET', offsets_key, source, int(offset))
end

-- Many fields per command: a command costs more than a field.
local function in_chunks(command, key, args)
  for first = 1, #args, 1000 do
    redis.call(command, key, unpack(args, first, math.min(first + 999, #args)))
  end
end

local written, leg_fields, legidx_args = {}, {}, {}
local now_text = int(now)
for _, call_id in ipairs(touched) do
  if not written[call_id] then
    written[call_id] = true
    local leg = legs[call_id]
    if leg.stored_hour ~= hour then
      legidx_args[#legidx_args + 1] = now_text
      legidx_args[#legidx_args + 1] = call_id
    end
    leg_fields[#leg_fields + 1] = call_id
    leg_fields[#leg_fields + 1] = leg.st .. '|' .. (leg.q and int(leg.q) or '') ..
      '|' .. (leg.d and int(leg.d) or '') .. '|' .. (leg.a and int(leg.a) or '') .. '|' ..
      (leg.caller or '') .. '|' .. (leg.priority and int(leg.priority) or '') .. '|' ..
      (leg.agent or '') .. '|' .. hour .. '|' .. leg.tokens
  end
end
in_chunks('HSET', legs_key, leg_fields)
in_chunks('ZADD', legidx_key, legidx_args)

-- Each moved leg's waiting sets, from how it was to how it is.
local gone = {waiting = {}, ranked = {}, cbwait = {}}
local added = {waiting = {}, ranked = {}, cbwait = {}}
local function push(t, a, b) t[#t + 1] = a; if b ~= nil then t[#t + 1] = b end end
for _, call_id in ipairs(moved) do
  local before = was_waiting[call_id]
  local leg = legs[call_id]
  local after = leg and leg.st == 'W' and leg or nil
  if not (before and after and before.q == after.q and before.caller == after.caller
          and before.priority == after.priority) then
    if before then
      if not after then push(gone.waiting, call_id) end
      push(gone.ranked, ranked_member(call_id, before.q))
      local member = cb_member(call_id, before)
      if member then push(gone.cbwait, member) end
    end
    if after then
      push(added.waiting, int(after.q), call_id)
      push(added.ranked, int(-(after.priority or 0)), ranked_member(call_id, after.q))
      local member = cb_member(call_id, after)
      if member then push(added.cbwait, int(after.q + cfg.cb_wait_ms), member) end
    end
  end
end
local waiting_changed = false
for _, each in ipairs({{'waiting', K.waiting}, {'ranked', K.ranked},
                       {'cbwait', K.callback_wait}}) do
  local set, key = each[1], each[2]
  if #gone[set] > 0 then
    in_chunks('ZREM', prefix .. key, gone[set])
    waiting_changed = true
  end
  if #added[set] > 0 then
    in_chunks('ZADD', prefix .. key, added[set])
    waiting_changed = true
  end
end
if waiting_changed then redis.call('INCR', prefix .. K.waiting_gen) end

for _, w in ipairs(cfg.windows) do
  local window, width = w[1], w[2]
  local ttl = ((cfg.reach or {})[tostring(window)] or window) + 2 * width +
              cfg.bucket_ttl_extra_s
  local buckets = {}  -- bucket number -> {figure -> increment}
  local per = width / unit
  for u, counted in pairs(units) do
    local sums = sums_at(buckets, math.floor(u / per))
    for figure, amount in pairs(counted) do sums[figure] = (sums[figure] or 0) + amount end
  end
  for n, sums in pairs(buckets) do
    local key = prefix .. K.window .. window .. ':' .. n
    for figure, amount in pairs(sums) do  -- a whole number: Redis writes it in digits
      redis.call('HINCRBY', key, figure, amount)
    end
    redis.call('EXPIRE', key, ttl)
  end
end

for outcome, amount in pairs(totals) do
  redis.call('HINCRBY', totals_key, outcome, int(amount))
end
redis.call('SET', prefix .. K.seen, int(now))
local encoded_facts = nil
if #facts > 0 then
  encoded_facts = cjson.encode(facts)
  redis.call('HSET', prefix .. K.facts, facts[1][1], encoded_facts)
end
for bucket, n in pairs(offered_with_caller) do
  redis.call('HINCRBY', prefix .. K.journey_window, int(bucket) .. ':c', n)
end

-- Forget legs idle past the horizon (sweep_queue.lua does it for queues with no batch).
local stale = redis.call('ZRANGEBYSCORE', legidx_key, '-inf', now - cfg.leg_ttl_ms,
                         'LIMIT', 0, 1000)
for _, call_id in ipairs(stale) do
  local queued = redis.call('ZSCORE', waiting_key, call_id)
  if queued then redis.call('ZREM', ranked_key, ranked_member(call_id, tonumber(queued))) end
  redis.call('HDEL', legs_key, call_id)
  redis.call('ZREM', waiting_key, call_id)
  redis.call('ZREM', legidx_key, call_id)
end

if encoded_facts then
  return table.concat(results) .. '\n' .. encoded_facts
end
return table.concat(results)
