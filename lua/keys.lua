-- keys: builders for coalesceKey hooks (part of Sluice's embedded Lua library).
--
--   local keys = require("keys")
--   coalesceKey = keys.field("quote.symbol")       -- payload.quote.symbol
--   coalesceKey = keys.fields("venue", "symbol")   -- "<venue>:<symbol>"
--
-- A key function returns nil when a field is missing; the message then has no key.
local M = {}

local function split(path)
  local parts = {}
  for part in string.gmatch(path, "[^%.]+") do parts[#parts + 1] = part end
  assert(#parts > 0, "keys: empty field path")
  return parts
end

local function lookup(payload, parts)
  local v = payload
  for i = 1, #parts do
    if type(v) ~= "table" then return nil end
    v = v[parts[i]]
  end
  local t = type(v)
  if t == "string" or t == "number" then return v end
  if t == "boolean" then return tostring(v) end
  return nil
end

-- keys.field(path) -> function(topic, payload) -> key | nil
function M.field(path)
  local parts = split(path)
  return function(_, payload) return lookup(payload, parts) end
end

-- keys.fields(path, ...) -> function returning the values joined with ":" (nil if any is missing)
function M.fields(...)
  local paths = { ... }
  local split_paths = {}
  for i = 1, #paths do split_paths[i] = split(paths[i]) end
  return function(_, payload)
    local out = {}
    for i = 1, #split_paths do
      local v = lookup(payload, split_paths[i])
      if v == nil then return nil end
      out[i] = tostring(v)
    end
    return table.concat(out, ":")
  end
end

-- keys.topic() -> the topic name is the key (latest value per topic wins)
function M.topic()
  return function(topic) return topic end
end

M.lookup = function(payload, path) return lookup(payload, split(path)) end

return M
