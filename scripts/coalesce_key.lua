-- coalesce_key: a coalesceKey hook keyed by one or more payload fields.
--
--   coalesceKey = sluice.script("coalesce_key", { fields = { "symbol", "venue" } })
--   -- {"symbol":"AAPL","venue":"XNAS",...} -> "AAPL|XNAS"
--
-- Options:
--   fields     list of field paths ("quote.symbol" reaches into nested objects); or
--   field      one path (for a single field prefer coalesceKey = "symbol": the core resolves
--              a field path in C without calling Lua at all)
--   separator  joins the values (default "|")
--   topic      true: prefix the key with the topic ("prices|AAPL|XNAS"), for namespaces whose
--              lanes mix topics (default false)
--   missing    what a missing field gives: nil (default: the message gets no key and is not
--              coalesced) or a placeholder string such as "-"
--
-- Values that are strings, numbers or booleans are used as text; anything else (objects,
-- arrays, null) counts as missing.
local keys = require("keys")
local split, get = keys.path, keys.get

return function(opts)
  opts = opts or {}
  local list = opts.fields or (opts.field and { opts.field })
  if type(list) ~= "table" or #list == 0 then
    error("coalesce_key: fields (a list of payload field paths) is required", 2)
  end
  local paths = {}
  for i = 1, #list do
    if type(list[i]) ~= "string" then error("coalesce_key: fields[" .. i .. "] must be a string", 2) end
    paths[i] = split(list[i], "coalesce_key")
  end
  local sep = opts.separator or "|"
  if type(sep) ~= "string" then error("coalesce_key: separator must be a string", 2) end
  local missing = opts.missing
  if missing ~= nil and type(missing) ~= "string" then
    error("coalesce_key: missing must be a string", 2)
  end
  local with_topic = opts.topic == true
  local n = #paths

  local function value(payload, parts)
    local v = get(payload, parts)
    local t = type(v)
    if t == "string" then return v end
    if t == "number" or t == "boolean" then return tostring(v) end
    return nil
  end

  -- Declares (topic, payload): the payload is decoded for this hook.
  return function(topic, payload)
    if n == 1 and not with_topic then
      local v = value(payload, paths[1])
      if v == nil then return missing end
      return v
    end
    local out = {}
    for i = 1, n do
      local v = value(payload, paths[i])
      if v == nil then
        if missing == nil then return nil end
        v = missing
      end
      out[i] = v
    end
    local key = table.concat(out, sep)
    if with_topic then return topic .. sep .. key end
    return key
  end
end
