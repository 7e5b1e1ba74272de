describe("scripts/static_tokens", function()
  it("accepts listed tokens with the token as principal", function()
    local hook = sluice.script("static_tokens", { tokens = { "t-1", "t-2" } })
    eq({ call_authorize(hook, "t-2", "prices") }, { true, "t-2", 0 })
    eq({ call_authorize(hook, "t-3", "prices") }, { false, "invalid token", 0 })
    eq({ call_authorize(hook, nil, "prices") }, { false, "missing token", 0 })
    eq({ call_authorize(hook, "", nil) }, { false, "missing token", 0 })
  end)

  it("maps tokens to principals and restricts topics per principal", function()
    local hook = sluice.script("static_tokens", {
      tokens = { ["s-a"] = "alice", ["s-b"] = "bob" },
      topics = { alice = { "prices" }, bob = { "*" } },
      reason = "go away",
    })
    eq({ call_authorize(hook, "s-a", "prices") }, { true, "alice", 0 })
    eq({ call_authorize(hook, "s-a", "orders") }, { false, "not allowed to subscribe to orders", 0 })
    eq({ call_authorize(hook, "s-a", nil) }, { true, "alice", 0 }) -- CONNECT: no topic
    eq({ call_authorize(hook, "s-b", "orders") }, { true, "bob", 0 })
    eq({ call_authorize(hook, "alice", "prices") }, { false, "go away", 0 })
  end)

  it("validates its options", function()
    raises(function() sluice.script("static_tokens", {}) end, "tokens")
    raises(function() sluice.script("static_tokens", { tokens = {} }) end, "tokens is empty")
    raises(function() sluice.script("static_tokens", { tokens = { "" } }) end, "non-empty")
    raises(function() sluice.script("static_tokens", { tokens = { a = 1 } }) end, "principal")
  end)
end)
