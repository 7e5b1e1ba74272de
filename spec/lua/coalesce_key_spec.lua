describe("scripts/coalesce_key", function()
  local function key(opts, json, topic) return (call_coalesce(sluice.script("coalesce_key", opts), topic or "prices", json)) end

  it("joins several fields", function()
    eq(key({ fields = { "symbol", "venue" } }, "{\"symbol\":\"AAPL\",\"venue\":\"XNAS\",\"p\":1}"), "AAPL|XNAS")
  end)

  it("reads one field, nested paths, numbers and booleans", function()
    eq(key({ field = "symbol" }, "{\"symbol\":\"AAPL\"}"), "AAPL")
    eq(key({ fields = { "quote.id" } }, "{\"quote\":{\"id\":42}}"), "42")
    eq(key({ fields = { "a", "b" } }, "{\"a\":true,\"b\":1.5}"), "true|1.5")
  end)

  it("gives no key when a field is missing, unless a placeholder is set", function()
    eq(key({ fields = { "a", "b" } }, "{\"a\":\"x\"}"), nil)
    eq(key({ fields = { "a", "b" } }, "{\"a\":\"x\",\"b\":null}"), nil)
    eq(key({ fields = { "a", "b" } }, "{\"a\":\"x\",\"b\":{}}"), nil)
    eq(key({ fields = { "a", "b" }, missing = "-" }, "{\"a\":\"x\"}"), "x|-")
    eq(key({ fields = { "a" } }, "[1,2]"), nil)
  end)

  it("can prefix the topic and use another separator", function()
    eq(key({ fields = { "a", "b" }, separator = ":", topic = true }, "{\"a\":1,\"b\":2}", "t"), "t:1:2")
  end)

  it("validates its options", function()
    raises(function() sluice.script("coalesce_key", {}) end, "fields")
    raises(function() sluice.script("coalesce_key", { fields = { 1 } }) end, "fields[1] must be a string")
    raises(function() sluice.script("coalesce_key", { fields = { "" } }) end, "empty field path")
    raises(function() sluice.script("coalesce_key", { fields = { "a" }, separator = 1 }) end, "separator")
  end)
end)
