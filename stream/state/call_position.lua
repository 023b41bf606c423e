-- Where one call stands in one queue's waiting list (GET /api/calls/{call_id}).
--
-- KEYS[1]  the queue's key prefix (see apply_queue.lua for the layout)
-- ARGV[1]  the call_id
-- Returns {position, queued ts in ms as a string} (position 1 is answered next: higher
-- priority, then earlier queued ts, then call_id), or false when the call does not wait
-- here. Two O(log n) lookups, whatever the queue's length.

local prefix = KEYS[1]
local call_id = ARGV[1]

-- A waiting call's :ranked member, as apply_queue.lua writes it.
local function ranked_member(ts)
  if ts < 0 then
    return '0' .. string.gsub(string.format('%018.0f', -ts), '%d',
                              function(d) return 9 - d end) .. '|' .. call_id
  end
  return '1' .. string.format('%018.0f', ts) .. '|' .. call_id
end

local queued = redis.call('ZSCORE', prefix .. ':waiting', call_id)
if not queued then return false end
local rank = redis.call('ZRANK', prefix .. ':ranked', ranked_member(tonumber(queued)))
if not rank then return false end
return {rank + 1, queued}
