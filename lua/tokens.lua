-- tokens: authorize hooks from static token lists (StreamFenceJs's StaticTokenValidator).
--
--   local tokens = require("tokens")
--   authorize = tokens.static({ "secret-1", "secret-2" })          -- principal = the token
--   authorize = tokens.map({ ["secret-1"] = "alice" })             -- principal from a map
--
-- An authorize hook is function(token, namespace, topic, client) -> principal | nil, reason.
local M = {}

function M.static(list)
  assert(type(list) == "table", "tokens.static: list of tokens expected")
  local set = {}
  for _, t in ipairs(list) do set[t] = true end
  return function(token)
    if type(token) == "string" and set[token] then return token end
    return nil, "invalid token"
  end
end

function M.map(principals)
  assert(type(principals) == "table", "tokens.map: table of token -> principal expected")
  return function(token)
    local p = type(token) == "string" and principals[token] or nil
    if p then return p end
    return nil, "invalid token"
  end
end

return M
