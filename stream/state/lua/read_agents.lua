-- Read every agent's state and its staffed time per window in one call (snapshot refresh).
--
-- KEYS[1]  the agents key prefix (see apply_agents.lua for the layout)
-- ARGV[1]  JSON: {now, windows: [[window_s, bucket_s], ...]}
-- Returns JSON: {states: {agent_id: "state|queues|since_ms"},
--                windows: {"<window_s>": {"<agent_id>|<state>": ms}}}
-- A window holds the buckets from the one holding now - window to the one holding now,
-- as read_queue.lua reads a queue's; the state still open is the reader's to add.

local prefix = KEYS[1]
local cfg = cjson.decode(ARGV[1])
local now_s = cfg.now / 1000

local windows = {}
for _, w in ipairs(cfg.windows) do
  local sums = {}
  for bucket = math.floor((now_s - w[1]) / w[2]), math.floor(now_s / w[2]) do
    local flat = redis.call('HGETALL', prefix .. K.window .. w[1] .. ':' .. bucket)
    for i = 1, #flat, 2 do
      sums[flat[i]] = (sums[flat[i]] or 0) + tonumber(flat[i + 1])
    end
  end
  windows[tostring(w[1])] = sums
end

local states = {}
local flat = redis.call('HGETALL', prefix .. K.state)
for i = 1, #flat, 2 do states[flat[i]] = flat[i + 1] end
return cjson.encode({states = states, windows = windows})
