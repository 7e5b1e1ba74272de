describe("scripts/rate_limit", function()
  local function clock() local t = { now = 0 } return t, function() return t.now end end

  it("allows a burst, then the refill rate, per client", function()
    local t, now = clock()
    local hook = sluice.script("rate_limit", { rate = 2, burst = 3, clock = now })
    local allowed = 0
    for _ = 1, 5 do if call_client_publish(hook, "t", "{}") then allowed = allowed + 1 end end
    eq(allowed, 3)
    t.now = 500 -- one token back
    eq((call_client_publish(hook, "t", "{}")), true)
    eq((call_client_publish(hook, "t", "{}")), false)
  end)

  it("never decodes the payload", function()
    local hook = sluice.script("rate_limit", { rate = 10 })
    eq({ call_client_publish(hook, "t", "{not json") }, { true, nil, 0 })
  end)

  it("keys by principal or per topic when asked", function()
    local _, now = clock()
    set_client("alice")
    local by_topic = sluice.script("rate_limit", { rate = 1, burst = 1, perTopic = true, clock = now })
    eq((call_client_publish(by_topic, "a", "{}")), true)
    eq((call_client_publish(by_topic, "b", "{}")), true)
    eq((call_client_publish(by_topic, "a", "{}")), false)
    local by_principal = sluice.script("rate_limit", { rate = 1, burst = 1, by = "principal", clock = now })
    eq((call_client_publish(by_principal, "a", "{}")), true)
    eq((call_client_publish(by_principal, "a", "{}")), false)
    set_client(nil)
  end)

  it("uses sluice.now_ms by default", function()
    local hook = sluice.script("rate_limit", { rate = 1000, burst = 1 })
    eq((call_client_publish(hook, "t", "{}")), true)
  end)

  it("validates its options", function()
    raises(function() sluice.script("rate_limit", {}) end, "rate")
    raises(function() sluice.script("rate_limit", { rate = 1, burst = 0 }) end, "burst")
    raises(function() sluice.script("rate_limit", { rate = 1, by = "ip" }) end, "by must be")
  end)
end)
