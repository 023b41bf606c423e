-- Take caller facts into callers' 24 h journeys, atomically (contract §2 journeys).
--
-- KEYS     the callers' key prefixes, e.g. "cs:{c:4915112345678}" (one hash tag per
--          caller; on a Cluster, the callers of one call share a slot)
-- ARGV[1]  JSON config: {now, day_ms, keep_ms}
-- ARGV[2]  JSON list, one per key, of its caller's ops in the order to take them, four
--          strings each, one after the other: op, queue_id, ts_ms, mark (an op's
--          number, from 1 in its caller's list, is what its decisions answer); mark:
--          the first 8 hex digits of the SHA-1 of the fact's token (made by the caller:
--          Lua's own takes several times as long)
--          op: Q queued, A answered (or a callback that reached the caller), B abandoned
--          (a miss), S abandoned sooner than the queue's short-abandon threshold (no
--          miss), X the miss at ts_ms on queue_id may be lost (no mark; now ≥ ts + day)
-- Returns a JSON list of what the queues' keys must record (journey_queue.lua), seven
-- values a decision, one after the other:
--   key, number, queue_id, kind, ts, at, recovery_ms  key: the caller's, from 1 in KEYS;
--   number: the op that decided it (0 for a loss, and for the recovery of a miss taken
--   before by an answer); kind: r a repeat call, m a missed caller (miss at ts), R
--   recovered (the miss at ts, answered at `at`), L lost (the miss at ts, lost at `at`);
--   a first call (c) needs nothing more: apply_queue.lua counted it
--
-- The journey is one string of "field<TAB>value" lines, read with one GET and written
-- once at the end with its TTL by one SET (as a hash it took a write and a PEXPIRE, a
-- quarter of this script's time; a journey still stored as a hash is read as one):
--   :j  q last queued ts; a the answers' ts of the last day (comma-separated);
--       m:<queue_id> the queue's open miss (the caller's last miss there); r:<queue_id>
--       "miss|answer": its last recovery there (an earlier answer taken late redates it);
--       t:<mark> "<ts>|<decision>": a fact
--       taken, and what it decided, so that a fact that comes again (a retry, a relay
--       of leftovers) answers the same decisions and changes nothing here
-- The key expires keep_ms after its last write; marks older than keep_ms are dropped.

local cfg = cjson.decode(ARGV[1])
local batches = cjson.decode(ARGV[2])
local day = cfg.day_ms
local writes = {}
local out = {}  -- the decisions, seven values each

local function int(x) return string.format('%.0f', x) end
-- The first bytes of the fields "m:<queue>" and "r:<queue>".
local MISS, RECOVERY, COLON = string.byte('mr:', 1, 3)

-- The caller being worked on: its number in KEYS, its journey fields as changed so far,
-- and whether they changed (set by `journey` for each caller in turn).
local who, j, changed

local function put(field, value) j[field] = value; changed = true end
local function drop(field) j[field] = nil; changed = true end
local function num(field) local v = j[field]; return v and tonumber(v) end
-- The time that leads a "<ts>|..." value (a mark, a recovery).
local function lead(value) return tonumber(string.match(value, '^(%-?%d+)|')) end
local function decided(number, queue, kind, ts, at, recovery)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4] = who, number, queue, kind
  out[n + 5], out[n + 6], out[n + 7] = ts, at, recovery
end

-- The decisions a fact made, from its stored mark (first time or again).
local function replay(queue, number, ts, decision)
  local kind = string.sub(decision, 1, 1)
  if kind == 'r' or kind == 'm' then
    decided(number, queue, kind, ts, ts, 0)
  elseif kind == 'R' then  -- a miss answered before it was applied: recovered at once
    local at = tonumber(string.sub(decision, 2))
    decided(number, queue, 'R', ts, at, at - ts)
  elseif kind == 'A' and decision ~= 'A' then  -- the misses it recovered, ";queue=ts" each
    for q, m in string.gmatch(decision, ';([^=;]+)=(%-?%d+)') do
      m = tonumber(m)
      decided(0, q, 'R', m, ts, ts - m)
    end
  end
end

local function decide(op, queue, ts, ts_text)
  if op == 'Q' then
    local last = num('q')
    if last == nil or ts > last then put('q', ts_text) end
    if last ~= nil and math.abs(ts - last) <= day then return 'r' end
    return 'c'
  end
  if op == 'A' then
    if j.a then
      local answers = {ts_text}
      for a in string.gmatch(j.a, '[^,]+') do
        local at = tonumber(a)
        if at ~= ts and at > ts - day then answers[#answers + 1] = a end
      end
      put('a', table.concat(answers, ','))
    else
      put('a', ts_text)
    end
    local recovered = {'A'}
    -- The misses and recoveries, copied out first: recovering one adds a field.
    local fields = nil
    for field, value in pairs(j) do
      local first, colon = string.byte(field, 1, 2)
      if colon == COLON and (first == MISS or first == RECOVERY) then
        fields = fields or {}
        fields[#fields + 1] = {field, value}
      end
    end
    for _, fv in ipairs(fields or {}) do
      local field, value = fv[1], fv[2]
      local q = string.match(field, '^m:(.*)$')
      local m = tonumber(value)
      if q and m <= ts and ts - m < day then
        drop(field)
        put('r:' .. q, int(m) .. '|' .. ts_text)
        recovered[#recovered + 1] = ';' .. q .. '=' .. int(m)
      end
      q = string.match(field, '^r:(.*)$')
      if q then  -- an earlier answer, taken late: it dates the recovery
        local miss, at = string.match(value, '^(%-?%d+)|(%-?%d+)$')
        miss, at = tonumber(miss), tonumber(at)
        if miss <= ts and ts < at and ts - miss < day then
          put(field, int(miss) .. '|' .. ts_text)
          recovered[#recovered + 1] = ';' .. q .. '=' .. int(miss)
        end
      end
    end
    return table.concat(recovered)
  end
  if op == 'S' then return 's' end  -- a short abandon is no miss
  local first = nil  -- the first answer at or after the miss, within the day
  for a in string.gmatch(j.a or '', '[^,]+') do
    a = tonumber(a)
    if a >= ts and a - ts < day and (first == nil or a < first) then first = a end
  end
  local open, last = num('m:' .. queue), j['r:' .. queue]
  -- A miss there as late or later, open or recovered: this one, taken late, is not the
  -- caller's state on the queue.
  local later = (open ~= nil and open >= ts)
    or (last ~= nil and lead(last) >= ts)
  if first ~= nil then
    if not later and open == nil then put('r:' .. queue, ts_text .. '|' .. int(first)) end
    return 'R' .. int(first)
  end
  if not later then
    put('m:' .. queue, ts_text)
    if last then drop('r:' .. queue) end  -- missed again: that recovery is past
  end
  return 'm'
end

-- The journey as stored: one concat (nil: nothing left to keep).
local function lines(fields)
  local parts, n = {}, 0
  for field, value in pairs(fields) do
    parts[n + 1], parts[n + 2], parts[n + 3], parts[n + 4] = field, '\t', value, '\n'
    n = n + 4
  end
  if n > 0 then return table.concat(parts, '', 1, n - 1) end
  return nil
end

-- What the first call of a caller with no journey decides, by how it ended: the usual
-- journey by far (most callers call once a day), so it is written straight out, as the
-- steps below would write it, in half the time.
local FIRST_CALL = {A = 'A', B = 'm', S = 's'}

-- The journey of a caller with no journey whose ops are one call: queued, then perhaps
-- answered, abandoned or abandoned short (false: other ops, for the steps below).
local function first_call(key, ops)
  local n = #ops
  local ended = n == 8 and FIRST_CALL[ops[5]]
  if ops[1] ~= 'Q' or not (n == 4 or (ended and ops[8] ~= ops[4])) then return false end
  local queued = ops[3]
  local text = 'q\t' .. queued .. '\nt:' .. ops[4] .. '\t' .. queued .. '|c'
  if ended then
    local queue, ts_text = ops[6], ops[7]
    text = text .. '\nt:' .. ops[8] .. '\t' .. ts_text .. '|' .. ended
    if ended == 'A' then
      text = text .. '\na\t' .. ts_text
    elseif ended == 'm' then
      text = text .. '\nm:' .. queue .. '\t' .. ts_text
      local ts = tonumber(ts_text)
      decided(2, queue, 'm', ts, ts, 0)
    end
  end
  writes[#writes + 1] = {key, text}
  return true
end

-- One caller's journey (the who-th key): its decisions go to `out`, its writes to
-- `writes`.
local function journey(key, ops)
  local stored = redis.pcall('GET', key)
  local exists = stored ~= false
  if not exists and first_call(key, ops) then return end
  j, changed = {}, false
  if type(stored) == 'string' then
    for field, value in string.gmatch(stored, '([^\t\n]+)\t([^\n]*)') do j[field] = value end
  elseif exists then  -- WRONGTYPE: a journey written as a hash by an earlier version
    local flat = redis.call('HGETALL', key)
    for i = 1, #flat, 2 do j[flat[i]] = flat[i + 1] end
  end
  local newest = 0

  for k = 1, #ops, 4 do
    local op, queue, ts_text = ops[k], ops[k + 1], ops[k + 2]
    local ts, number = tonumber(ts_text), (k + 3) / 4
    if ts > newest then newest = ts end
    if op == 'X' then
      local open = num('m:' .. queue)
      if (open == ts or not exists) and cfg.now - ts >= day then
        if open then drop('m:' .. queue) end
        decided(0, queue, 'L', ts, ts + day, 0)
      end
    else
      local mark = 't:' .. ops[k + 3]
      local seen = j[mark]
      if seen then
        replay(queue, number, ts, string.match(seen, '^%-?%d+|(.*)$'))
      else
        local decision = decide(op, queue, ts, ts_text)
        put(mark, ts_text .. '|' .. decision)
        replay(queue, number, ts, decision)
      end
    end
  end

  -- Marks past the horizon can no longer come again (a new journey has none).
  for field, value in pairs(exists and j or {}) do
    if string.sub(field, 1, 2) == 't:' and lead(value) < newest - cfg.keep_ms then
      drop(field)
    end
  end

  if changed then writes[#writes + 1] = {key, lines(j) or false} end
end

for i, prefix in ipairs(KEYS) do
  who = i
  journey(prefix .. K.journey, batches[i])
end

-- Written only once every caller's ops are worked out.
for _, w in ipairs(writes) do
  if w[2] then
    redis.call('SET', w[1], w[2], 'PX', cfg.keep_ms)
  else
    redis.call('DEL', w[1])
  end
end
return cjson.encode(out)
