-- Payload views (lua/pview.c): the payload route (msg.payload) and coalesceKey read is served
-- from the JSON text. It must read like the decoded table it stands for, refuse writes, and
-- die with its hook call.
local json = sluice.json

-- Run fn(payload) as a coalesceKey hook over text; returns fn's first result (as a key, so
-- only strings/numbers come back), and the number of Lua errors counted.
local function with_payload(text, fn)
  local out
  local _, errors = call_coalesce(function(_, p) out = { fn(p) } end, "t", text)
  return out and out[1], errors, out
end

local DOC = [[{"s":"AAPL","n":187.25,"i":-3,"e":1e3,"t":true,"f":false,"z":null,
  "esc":"a\"b\\c\n\u00e9\ud83d\ude00","obj":{"x":{"y":[10,20,{"deep":"yes"}]}},
  "arr":["a","b","c"],"empty":{},"none":[],"k\u0065y":"escaped key"}]]

describe("payload views", function()
  it("read scalars like the decoder does", function()
    local _, errors, r = with_payload(DOC, function(p)
      return { p.s, p.n, p.i, p.e, p.t, p.f, p.z, p.esc, p.missing, p[1] }
    end)
    eq(errors, 0)
    local v = r[1]
    eq(v[1], "AAPL")
    eq(v[2], 187.25)
    eq(v[3], -3)
    eq(v[4], 1000)
    eq(v[5], true)
    eq(v[6], false)
    eq(v[7], json.null)
    eq(v[8], "a\"b\\c\n\195\169\240\159\152\128")
    eq(v[9], nil)
    eq(v[10], nil)
  end)

  it("match escaped keys by their decoded name", function()
    eq(with_payload(DOC, function(p) return p.key end), "escaped key")
  end)

  it("give objects and arrays as views, indexable in any order", function()
    local _, errors, r = with_payload(DOC, function(p)
      local a = p.arr
      return { p.obj.x.y[3].deep, p.obj.x.y[2], a[3], a[1], a[2], a[4], a[0], a[1.5], a.x,
               #a, #p, #p.none, #p.empty, type(p), type(a), p.obj == p.obj }
    end)
    eq(errors, 0)
    eq(r[1], { "yes", 20, "c", "a", "b", nil, nil, nil, nil, 3, 0, 0, 0, "table", "table", true })
  end)

  it("iterate with pairs, ipairs and next", function()
    local _, errors, r = with_payload([[{"a":1,"b":[true,"x"],"c":{"d":2}}]], function(p)
      local keys, vals = {}, {}
      for k, v in pairs(p) do keys[#keys + 1] = k; vals[#vals + 1] = type(v) end
      local items = {}
      for i, v in ipairs(p.b) do items[i] = v end
      local n = 0
      for i in pairs(p.b) do n = n + i end
      local objipairs = 0
      for _ in ipairs(p) do objipairs = objipairs + 1 end
      local k1, v1 = next(p)
      local k2 = next(p, "a")
      local k3 = next(p, "c")
      return { keys, vals, items, n, objipairs, k1, v1, k2, k3, next(p.c, "d"), next(p.b, 1) }
    end)
    eq(errors, 0)
    local v = r[1]
    eq(v[1], { "a", "b", "c" })
    eq(v[2], { "number", "table", "table" })
    eq(v[3], { true, "x" })
    eq(v[4], 3)
    eq(v[5], 0)
    eq(v[6], "a")
    eq(v[7], 1)
    eq(v[8], "b")
    eq(v[9], nil)
    eq(v[10], nil)
    eq(v[11], 2)
  end)

  it("work with rawget, unpack, table.concat and the json module", function()
    local _, errors, r = with_payload([[{"tags":["x","y","z"],"n":[1,2],"o":{"a" : 1 }}]], function(p)
      local copy = json.decode(p.o)
      copy.b = 2
      return { rawget(p, "n")[2], table.concat(p.tags, ","), select("#", unpack(p.n)),
               json.encode(p.o), json.encode({ wrap = p.tags }), copy.a + copy.b,
               json.is_array(p.tags), json.is_array(p.o), tostring(p.tags), getmetatable(p) }
    end)
    eq(errors, 0)
    eq(r[1], { 2, "x,y,z", 2, "{\"a\" : 1 }", "{\"wrap\":[\"x\",\"y\",\"z\"]}", 3, true, false,
               "[\"x\",\"y\",\"z\"]", nil })
  end)

  it("refuse writes", function()
    local _, errors, r = with_payload([[{"a":{"b":1}}]], function(p)
      local ok1, e1 = pcall(function() p.x = 1 end)
      local ok2, e2 = pcall(function() p.a.b = 2 end)
      return { ok1, e1, ok2, e2 }
    end)
    eq(errors, 0)
    eq(r[1][1], false)
    ok(tostring(r[1][2]):find("payload is read-only", 1, true), r[1][2])
    eq(r[1][3], false)
    ok(tostring(r[1][4]):find("read-only", 1, true), r[1][4])
  end)

  it("expire with their hook call, nested ones too", function()
    local kept, inner
    call_coalesce(function(_, p) kept, inner = p, p.a end, "t", [[{"a":{"b":1}}]])
    raises(function() return kept.a end, "used after its hook returned")
    raises(function() return inner.b end, "used after its hook returned")
    raises(function() for _ in pairs(inner) do end end, "used after its hook returned")
    eq(tostring(inner), "payload (expired)")
    -- the shared view, rebound by a later call, does not resurrect an old iterator
    local iter
    call_coalesce(function(_, p) iter = pairs(p) end, "t", [[{"a":1,"b":2}]])
    local _, errors = call_coalesce(function(_, p) return iter(p) end, "t", [[{"c":3}]])
    eq(errors, 1)
  end)

  it("scalar payloads are plain values", function()
    eq(with_payload("42", function(p) return p end), 42)
    eq(with_payload("\"x\"", function(p) return p end), "x")
    eq(with_payload(" [ 1 , 2 ] ", function(p) return #p end), 2)
    local _, _, r = with_payload("null", function(p) return p == json.null end)
    eq(r[1], true)
  end)

  it("raise on text that is not JSON when a read crosses it, without reading past it", function()
    for _, bad in ipairs({ "{oops", "{\"a\":", "{\"a\":1,", "{\"a\" 1}", "{\"a\":tru}",
                           "{\"a\":\"\\q\"}", "{\"a\":\"\\u12\"}", "{\"a\":01}", "[1,,2]",
                           "{\"a\":[1,2}", "{\"a\":\"unterminated}" }) do
      -- a missing key (objects) and the length (arrays) walk the whole text
      local _, errors = call_coalesce(function(_, p) return p.zz or #p end, "t", bad)
      if errors ~= 1 then error("no error for " .. bad) end
    end
    -- nesting deeper than the decoder allows is an error, not a crash
    local deep = string.rep("[", 300) .. string.rep("]", 300)
    local _, errors = call_coalesce(function(_, p) return #p end, "t", deep)
    eq(errors, 1)
  end)

  it("take the first of duplicate keys, like the field-path coalesce key", function()
    eq(with_payload([[{"a":1,"a":2}]], function(p) return p.a end), 1)
  end)
end)

describe("msg.payload in route", function()
  it("is a view: reads, passes through verbatim, and nests in a rewrite", function()
    local r = call_route(function(msg)
      if msg.payload ~= msg.payload then error("not the same view") end
      return { payload = { was = msg.payload, sym = msg.payload.q.sym } }
    end, "t", [[{"q": {"sym":"X"}, "n":[1, 2]}]])
    eq(r.errors, 0)
    ok(r.payload:find([["was":{"q": {"sym":"X"}, "n":[1, 2]}]], 1, true), r.payload)
    eq(json.decode(r.payload).sym, "X")
    r = call_route(function(msg) return { payload = msg.payload.n } end, "t", [[{"n":[1, 2]}]])
    eq(r.payload, "[1, 2]")
  end)

  it("comes as the second argument when route declares it", function()
    local same, sym, nargs
    call_route(function(msg, p) same, sym = rawequal(msg.payload, p), p.sym end, "t", [[{"sym":"Y"}]])
    eq(same, true)
    eq(sym, "Y")
    call_route(function(...) nargs = select("#", ...) end, "t", [[{"sym":"Y"}]])
    eq(nargs, 2) -- vararg: gets it too
    call_route(function(msg) nargs = msg.payload.sym end, "t", [[{"sym":"Z"}]])
    eq(nargs, "Z")
  end)

  it("an invalid payload put in a rewrite is refused, not forwarded", function()
    local r = call_route(function(msg) return { payload = msg.payload } end, "t", "{oops")
    eq(r.action, "deliver")
    eq(r.payload, nil)
    eq(r.errors, 1)
  end)

  it("nested hook calls keep the outer view", function()
    local inner_a
    local r = call_route(function(msg)
      local outer = msg.payload
      call_coalesce(function(_, p) inner_a = p.a end, "t", [[{"a":"inner"}]])
      return { payload = { outer = outer.a, inner = inner_a } }
    end, "t", [[{"a":"outer"}]])
    eq(r.errors, 0)
    local got = json.decode(r.payload)
    eq(got.outer, "outer")
    eq(got.inner, "inner")
  end)
end)

describe("the base library around views", function()
  it("keeps its argument errors at the caller's line", function()
    for _, fn in ipairs({ "pairs", "ipairs", "next", "rawget", "unpack" }) do
      local f = _G[fn]
      local ok_, err = pcall(function() local v = f(nil) return v end) -- not a tail call
      eq(ok_, false)
      ok(err:find("bad argument #1 to '" .. fn .. "' (table expected, got nil)", 1, true), err)
      ok(err:find("payload_view_spec.lua", 1, true), err)
    end
    eq(type(nil), "nil")
    eq(getmetatable("x").__index, string)
  end)
end)

describe("hook arguments in nested calls", function()
  it("alternating topics always arrive as themselves", function()
    for i, t in ipairs({ "a", "b", "b", "prices", "a", "" }) do
      eq((call_coalesce(function(topic, p) return topic .. ":" .. p.n end, t, '{"n":' .. i .. "}")), t .. ":" .. i)
    end
  end)
end)
