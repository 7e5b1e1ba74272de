describe("sluice timers", function()
  it("every() repeats until stopped, after() fires once", function()
    local n, once = 0, 0
    local t
    t = sluice.every(2, function()
      n = n + 1
      if n == 3 then t:stop() end
    end)
    sluice.after(1, function() once = once + 1 end)
    run_loop(40)
    eq(n, 3)
    eq(once, 1)
    eq(t:active(), false)
    t:stop() -- idempotent
  end)

  it("keep running after a callback error", function()
    local n = 0
    local t = sluice.every(2, function() n = n + 1; error("tick " .. n) end)
    -- 25 ms slices until 3 ticks (a loaded machine may give fewer in one slice)
    for _ = 1, 40 do
      run_loop(25)
      if n >= 3 then break end
    end
    t:stop()
    ok(n >= 3, "ran " .. n .. " times")
  end)

  it("validate their arguments", function()
    raises(function() sluice.every(0, function() end) end, "at least 1 ms")
    raises(function() sluice.after(5) end, "bad argument #2")
  end)
end)
