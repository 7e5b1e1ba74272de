-- keys: builders for coalesceKey hooks (part of Sluice's embedded Lua library).
--
--   local keys = require("keys")
--   coalesceKey = keys.field("quote.symbol")       -- payload.quote.symbol
--   coalesceKey = keys.fields("venue", "symbol")   -- "<venue>:<symbol>"
--
-- A key function returns nil when a field is missing; the message then has no key.
--
-- The field-path primitives below are the one Lua implementation of "a dotted path into a
-- payload" (the core has the C one for coalesceKey = "a.b"); the shipped scripts use them:
--
--   local path, get = keys.path("quote.symbol"), keys.get   -- once, when the hook is built
--   local v = get(payload, path)                            -- per call: value or nil
local M = {}

-- keys.path(path [, who]) -> list of the path's parts. Raises "<who>: empty field path"
-- (who defaults to "keys") at the caller's caller, for option checks in script factories.
local function split(path, who)
  local parts = {}
  for part in string.gmatch(path, "[^%.]+") do parts[#parts + 1] = part end
  if #parts == 0 then error((who or "keys") .. ": empty field path", 3) end
  return parts
end

-- keys.get(payload, parts) -> the value at that path, or nil when a step is not a table
-- (payload views count as tables).
local function get(v, parts)
  for i = 1, #parts do
    if type(v) ~= "table" then return nil end
    v = v[parts[i]]
  end
  return v
end

local function lookup(payload, parts)
  local v = get(payload, parts)
  local t = type(v)
  if t == "string" or t == "number" then return v end
  if t == "boolean" then return tostring(v) end
  return nil
end

M.path, M.get = split, get

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
