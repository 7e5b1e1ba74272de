local FIX = "spec/fixtures/lua/"

describe("hook scripts", function()
  it("cannot reach io, os.execute, load*, debug, ffi or string.dump", function()
    local hook = ok(load_script(FIX .. "escape.lua"))
    eq(hook(), "")
    eq(type(string.upper), "function") -- the script's string.upper = nil stayed in its copy
  end)

  it("cannot escape through string methods, rawset or shared metatables", function()
    local hook = ok(load_script(FIX .. "escape_more.lua"))
    eq(hook(), "")
    eq(string.dump, nil) -- removed for the whole VM: (''):dump reaches the real library
  end)

  it("report a syntax error with file and line", function()
    local hook, err = load_script(FIX .. "syntax_error.lua")
    eq(hook, nil)
    ok(err:find("syntax_error.lua:2:", 1, true), err)
  end)

  it("refuse global writes from a hook", function()
    local hook = ok(load_script(FIX .. "global_write.lua"))
    raises(function() hook(1) end, "assignment to undeclared global 'counter'")
    eq(rawget(_G, "helper"), nil)
  end)

  it("raise errors that carry the script position", function()
    local hook = ok(load_script(FIX .. "hook_error.lua"))
    raises(function() hook("prices", {}) end, "hook_error.lua:2: bad payload for prices")
  end)

  it("can require sluice and the embedded modules, read-only", function()
    local hook = ok(load_script(SPEC_DIR .. "/../fixtures/config/scripts/hooks.lua"))
    eq(type(hook), "table")
    eq(hook.authorize("good"), "alice")
  end)

  it("report a missing file", function()
    local hook, err = load_script(FIX .. "missing.lua")
    eq(hook, nil)
    ok(err:find("cannot read script", 1, true), err)
  end)
end)
