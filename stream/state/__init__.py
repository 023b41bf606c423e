"""Queue and agent state in Redis: key layout, Lua scripts and the store API."""
