-- Claim a queue's due outgoing messages of one channel (offers, cancels, alerts).
--
-- KEYS[1]  the queue's key prefix
-- ARGV     channel, now (ms), instance, claim_ms (how long a claim holds), limit
-- Keys below the prefix (written by the scripts that decide what to send):
--   :out:<channel>        hash msg_id -> payload (the message to publish)
--   :due:<channel>        zset msg_id -> time (ms) it may go out
--   :claim:<channel>      hash msg_id -> "instance|until_ms|claimed_ms"
-- Returns {msg_id, payload, claimed_ms of an expired claim of another instance or ""}
-- for each message claimed now: due, and not claimed, or claimed by a claim that ran out
-- (its instance died, or lost Redis, before it confirmed the message sent).
local prefix, channel = KEYS[1], ARGV[1]
local now, instance = tonumber(ARGV[2]), ARGV[3]
local claim_ms, limit = tonumber(ARGV[4]), tonumber(ARGV[5])
local out_key = prefix .. K.out .. channel
local due_key = prefix .. K.due .. channel
local claim_key = prefix .. K.claim .. channel
local claimed = {}
local due = redis.call('ZRANGEBYSCORE', due_key, '-inf', now, 'LIMIT', 0, limit)
for _, msg_id in ipairs(due) do
  local payload = redis.call('HGET', out_key, msg_id)
  if not payload then
    redis.call('ZREM', due_key, msg_id)  -- withdrawn (a cancelled offer)
  else
    local previous = ''
    local claim = redis.call('HGET', claim_key, msg_id)
    local free = true
    if claim then
      local owner, until_ms, at = string.match(claim, '^(.*)|(%d+)|(%d+)$')
      if tonumber(until_ms) > now then
        free = false
      elseif owner ~= instance then
        previous = at
      end
    end
    if free then
      redis.call('HSET', claim_key, msg_id, instance .. '|' .. string.format('%.0f', now +
        claim_ms) .. '|' .. string.format('%.0f', now))
      claimed[#claimed + 1] = {msg_id, payload, previous}
    end
  end
end
return claimed
