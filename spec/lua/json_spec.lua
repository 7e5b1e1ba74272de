describe("sluice.json", function()
  local json = sluice.json

  it("encodes scalars the way JSON.stringify does", function()
    eq(json.encode(1), "1")
    eq(json.encode(-0.5), "-0.5")
    eq(json.encode(true), "true")
    eq(json.encode("héllo\n"), "\"héllo\\n\"")
    eq(json.encode(json.null), "null")
    eq(json.encode(2^53), "9007199254740992")
  end)

  it("writes every integer up to 2^53 in full, others round-trip exactly", function()
    eq(json.encode(2^53), "9007199254740992")
    eq(json.encode(-2^53), "-9007199254740992")
    eq(json.encode(1796626026638180), "1796626026638180")
    eq(json.encode(1e15), "1000000000000000")
    eq(json.encode(-0), "0")
    eq(json.encode(123456789012345678), "1.2345678901234568e+17")
    eq(json.decode(json.encode(123456789012345678)), 123456789012345678)
    eq(json.encode(0.1), "0.1")
    eq(json.encode(1 / 3), "0.33333333333333331")
    eq(json.encode(2.5e20), "2.5e+20")
    eq(json.encode({ ts = 1796626026638180 }), "{\"ts\":1796626026638180}")
    -- a number key of a table that is not an array
    eq(json.encode({ [1796626026638180] = 1, x = 2 }):find("\"1796626026638180\":1", 1, true) ~= nil, true)
  end)

  it("passes a payload view with a 16-digit integer through verbatim", function()
    eq(json.encode(json.decode("[1796626026638180]")), "[1796626026638180]")
  end)

  it("tells arrays from objects", function()
    eq(json.encode({ 1, 2, 3 }), "[1,2,3]")
    eq(json.encode({ a = 1 }), "{\"a\":1}")
    eq(json.encode({}), "{}")
    eq(json.encode(json.array({})), "[]")
    eq(json.decode(json.encode({ [1] = "a", [3] = "c" })), { ["1"] = "a", ["3"] = "c" })
  end)

  it("round-trips nested values, keeping empty arrays", function()
    local text = "{\"list\":[],\"obj\":{},\"n\":[1,[2,[3]]],\"z\":null}"
    local v = json.decode(text)
    eq(v.z, json.null)
    eq(#v.n[2][2], 1)
    local again = json.decode(json.encode(v))
    eq(json.encode(again.list), "[]")
    eq(json.encode(again.obj), "{}")
  end)

  it("refuses what JSON cannot hold", function()
    raises(function() json.encode(function() end) end, "cannot encode a function")
    raises(function() json.encode(1 / 0) end, "NaN or infinity")
    raises(function() json.encode({ [true] = 1 }) end, "object keys must be strings")
    raises(function() json.decode("{\"a\":") end, "invalid JSON")
  end)
end)

describe("sluice.json.decode", function()
  local json = sluice.json

  it("decodes escapes and \\u sequences, surrogate pairs included", function()
    eq(json.decode([["a\"b\\c\/d\b\f\n\r\t"]]), "a\"b\\c/d\b\f\n\r\t")
    eq(json.decode([["\u00e9\u20ac"]]), "é€")
    eq(json.decode([["\ud83d\ude00"]]), "\240\159\152\128")
    eq(json.decode([["plain"]]), "plain")
  end)

  it("decodes numbers exactly", function()
    eq(json.decode("0"), 0)
    eq(json.decode("-12"), -12)
    eq(json.decode("1.5e3"), 1500)
    eq(json.decode("-0.25"), -0.25)
    eq(json.decode("123456789012345678"), 123456789012345678)
    eq(json.decode("1732740000000"), 1732740000000)
  end)

  it("accepts whitespace and decodes literals", function()
    local v = json.decode(" {\n\t\"a\" : [ true , false , null ] } ")
    eq(v.a[1], true)
    eq(v.a[2], false)
    eq(v.a[3], json.null)
    eq(json.encode(json.decode("[]")), "[]")
    eq(json.encode(json.decode("{}")), "{}")
  end)

  it("rejects invalid JSON with a position", function()
    local bad = { "", "01", "{\"a\":01}", "[-007]", "[00]", "1.", ".5", "-", "1e", "[1,]", "{\"a\"}", "{\"a\":1,}", "[1 2]",
                  "\"abc", "\"a\\x\"", "\"\\ud800\"", "\"\\udc00x\"", "\"tab\there\"", "tru",
                  "nul", "{a:1}", "[1]x", "'a'", "+1", "NaN" }
    for _, text in ipairs(bad) do
      local ok, err = pcall(json.decode, text)
      if ok then error("accepted " .. string.format("%q", text)) end
      if not tostring(err):find("invalid JSON at position", 1, true) then error(err) end
    end
    raises(function() json.decode("[1,2,x]") end, "position 6")
  end)

  it("refuses deep nesting without crashing", function()
    raises(function() json.decode(string.rep("[", 500) .. string.rep("]", 500)) end,
           "nested too deeply")
  end)
end)
