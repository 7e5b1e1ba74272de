-- runner.lua - a tiny spec runner for Sluice's Lua specs (run by spec/unit/test_luaspec.c on
-- the gateway's own LuaJIT, so the C bindings are exercised too).
--
--   describe("json", function()
--     it("encodes arrays", function() eq(sluice.json.encode({1, 2}), "[1,2]") end)
--   end)
--
-- collect(path) runs a spec file and returns its tests as { {name =, fn =}, ... }; the C side
-- runs each test in its own protected call and prints TAP lines.
local R = {}

local function fmt(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function deep_eq(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

local helpers = {}

function helpers.eq(got, want, msg)
  if not deep_eq(got, want) then
    error(string.format("%sexpected %s, got %s", msg and (msg .. ": ") or "", fmt(want), fmt(got)), 2)
  end
end

function helpers.ok(v, msg)
  if not v then error(msg or "expected a truthy value", 2) end
  return v
end

-- raises(fn, pattern): fn must raise an error whose message contains pattern (plain text)
function helpers.raises(fn, pattern, ...)
  local ok, err = pcall(fn, ...)
  if ok then error("expected an error" .. (pattern and (" matching " .. fmt(pattern)) or ""), 2) end
  if pattern and not string.find(tostring(err), pattern, 1, true) then
    error(string.format("error %s does not contain %s", fmt(tostring(err)), fmt(pattern)), 2)
  end
  return err
end

function R.collect(path)
  local tests, prefix = {}, {}
  local env = setmetatable({}, { __index = _G })
  for k, v in pairs(helpers) do env[k] = v end
  function env.describe(name, fn)
    prefix[#prefix + 1] = name
    fn()
    prefix[#prefix] = nil
  end
  function env.it(name, fn)
    local full = table.concat(prefix, " ") .. (#prefix > 0 and " " or "") .. name
    tests[#tests + 1] = { name = full, fn = fn }
  end
  local chunk = assert(loadfile(path))
  setfenv(chunk, env)
  chunk()
  return tests
end

return R
