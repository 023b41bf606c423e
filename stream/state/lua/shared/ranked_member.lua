-- A call's :ranked member: its queued ts in digits that sort as the times do (those
-- before 1970 complemented, so that they sort first), then its call_id.
local function ranked_member(call_id, ts)
  if ts < 0 then
    return '0' .. string.gsub(string.format('%018.0f', -ts), '%d',
                              function(d) return 9 - d end) .. '|' .. call_id
  end
  return '1' .. string.format('%018.0f', ts) .. '|' .. call_id
end
