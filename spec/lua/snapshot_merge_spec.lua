describe("scripts/snapshot_merge", function()
  local json = sluice.json
  local function run(hook, updates, prev)
    snapshot_reset()
    local state
    for i, u in ipairs(updates) do
      local rc, errors
      state, rc, errors = call_snapshot(hook, "t", u, i == 1 and prev or nil)
      eq(errors, 0, "update " .. i)
    end
    snapshot_reset()
    return state and json.decode(state)
  end

  it("merges objects recursively", function()
    local s = run(sluice.script("snapshot_merge"), {
      "{\"bid\":1.5,\"book\":{\"depth\":3,\"levels\":{\"a\":1}}}",
      "{\"ask\":1.6,\"book\":{\"levels\":{\"b\":2}}}",
    })
    eq(s.bid, 1.5)
    eq(s.ask, 1.6)
    eq(s.book.depth, 3)
    eq(s.book.levels.a, 1)
    eq(s.book.levels.b, 2)
  end)

  it("replaces arrays and scalars", function()
    local s = run(sluice.script("snapshot_merge"), { "{\"l\":[1,2,3],\"x\":{\"y\":1}}", "{\"l\":[4],\"x\":5}" })
    eq(json.encode(s.l), "[4]")
    eq(s.x, 5)
  end)

  it("deletes keys set to null, at any depth, and never stores nulls", function()
    local s = run(sluice.script("snapshot_merge"), {
      "{\"a\":1,\"b\":{\"c\":2,\"d\":3}}",
      "{\"a\":null,\"b\":{\"c\":null},\"e\":{\"f\":null,\"g\":1}}",
    })
    eq(s.a, nil)
    eq(s.b.c, nil)
    eq(s.b.d, 3)
    eq(s.e.f, nil)
    eq(s.e.g, 1)
  end)

  it("keeps an empty object as an object", function()
    local s = run(sluice.script("snapshot_merge"), { "{\"b\":{\"c\":1}}", "{\"b\":{\"c\":null}}" })
    snapshot_reset()
    local hook = sluice.script("snapshot_merge")
    call_snapshot(hook, "t", "{\"b\":{\"c\":1}}")
    eq(call_snapshot(hook, "t", "{\"b\":{\"c\":null}}"), "{\"b\":{}}")
    snapshot_reset()
    eq(type(s.b), "table")
  end)

  it("replaces the state with a non-object delta; a null clears it", function()
    local hook = sluice.script("snapshot_merge")
    eq(json.encode(run(hook, { "{\"a\":1}", "[1,2]" })), "[1,2]")
    snapshot_reset()
    call_snapshot(hook, "t", "{\"a\":1}")
    local state, rc = call_snapshot(hook, "t", "null")
    eq(state, nil)
    eq(rc, 0)
    eq(call_snapshot(hook, "t", "{\"b\":2}"), "{\"b\":2}")
    snapshot_reset()
  end)

  it("continues from the state carried over a reload", function()
    local s = run(sluice.script("snapshot_merge"), { "{\"b\":2}" }, "{\"a\":1}")
    eq(s.a, 1)
    eq(s.b, 2)
  end)

  it("starts over on a reset field", function()
    local s = run(sluice.script("snapshot_merge", { reset = "_full" }),
                  { "{\"a\":1,\"b\":2}", "{\"_full\":true,\"c\":3,\"d\":null}" })
    eq(s, { c = 3 })
  end)

  it("validates its options", function()
    raises(function() sluice.script("snapshot_merge", { maxDepth = 0 }) end, "maxDepth")
    raises(function() sluice.script("snapshot_merge", { reset = 1 }) end, "reset")
  end)
end)
