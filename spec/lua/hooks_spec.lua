-- The policy hooks as the core calls them (lua/vm.c sl_lua_route & co.), including the
-- documented fallbacks for errors, runaway loops and results of the wrong shape.
local FIX = "spec/fixtures/lua/"

describe("route", function()
  it("delivers on nil/true, drops on false", function()
    eq(call_route(function() end, "t", "{}").action, "deliver")
    eq(call_route(function() return true end, "t", "{}").action, "deliver")
    eq(call_route(function() return false end, "t", "{}").action, "drop")
  end)

  it("sees a read-only message view", function()
    set_client("alice")
    local seen
    local r = call_route(function(msg)
      seen = { msg.namespace, msg.topic, msg.source, msg.clientId, msg.principal, msg.json,
               msg.payload.a, msg.client.id, msg.nope }
      local ok, err = pcall(function() msg.topic = "x" end)
      seen.write = err
    end, "prices", "{\"a\":7}", "client")
    eq(r.errors, 0)
    eq(seen[1], "/spec")
    eq(seen[2], "prices")
    eq(seen[3], "client")
    eq(seen[4], "spec-client")
    eq(seen[5], "alice")
    eq(seen[6], "{\"a\":7}")
    eq(seen[7], 7)
    eq(seen[8], "spec-client")
    eq(seen[9], nil)
    ok(tostring(seen.write):find("read-only", 1, true), seen.write)
    set_client(nil)
  end)

  it("has no client fields for api and lua publishes", function()
    local src, id
    call_route(function(msg) src, id = msg.source, msg.clientId end, "t", "{}", "lua")
    eq(src, "lua")
    eq(id, nil)
  end)

  it("rewrites payload, topic(s) and recipients", function()
    local r = call_route(function(msg)
      return { payload = { n = msg.payload.n + 1 }, topics = { "a", "b" }, to = { "c1", "c2" } }
    end, "t", "{\"n\":1}")
    eq(r.action, "rewrite")
    eq(r.payload, "{\"n\":2}")
    eq(r.topics, { "a", "b" })
    eq(r.to, { "c1", "c2" })
    r = call_route(function() return { topic = "x" } end, "t", "{}")
    eq(r.topics, { "x" })
    eq(r.payload, nil)
  end)

  it("the view expires with the call", function()
    local kept
    call_route(function(msg) kept = msg end, "t", "{}")
    raises(function() return kept.topic end, "used after its hook returned")
  end)

  it("a run-time error delivers as is and is counted", function()
    local hook = ok(load_script(FIX .. "route_error.lua"))
    local r = call_route(hook, "t", "{\"x\":1}")
    eq(r.action, "deliver")
    eq(r.errors, 1)
    r = call_route(hook, "t", "{\"region\":{\"name\":\"eu\"}}")
    eq(r.topics, { "eu" })
    eq(r.errors, 0)
  end)

  it("a result of the wrong shape delivers as is and is counted", function()
    for _, bad in ipairs({ "x", 42, { topci = "a" }, { topic = "a", topics = { "b" } },
                           { topics = {} }, { to = { 1 } }, { payload = function() end } }) do
      local r = call_route(function() return bad end, "t", "{}")
      eq(r.action, "deliver")
      eq(r.errors, 1)
      eq(r.topics, nil)
    end
  end)

  it("an infinite loop is stopped by the instruction budget; the next call works", function()
    set_instruction_limit(200000)
    local hook = ok(load_script(FIX .. "route_loop.lua"))
    local r = call_route(hook, "spin", "{}")
    eq(r.action, "deliver")
    eq(r.errors, 1)
    r = call_route(hook, "fine", "{}")
    eq(r.errors, 0)
    local swallow = ok(load_script(FIX .. "swallow.lua"))
    eq(call_route(swallow, "t", "{}").errors, 1)
    set_instruction_limit(10000000)
  end)

  it("a global write from a hook is refused and counted", function()
    local hook = ok(load_script(FIX .. "global_write.lua"))
    eq(call_route(hook, "t", "{}").errors, 1)
  end)
end)

describe("authorize", function()
  it("accepts with a principal, refuses with a reason", function()
    local hook = function(token, ns, topic, client)
      if token == "good" then return "alice" end
      if token == "yes" then return true end
      return nil, "no: " .. tostring(token) .. " " .. ns .. " " .. tostring(topic) .. " " .. client.id
    end
    eq({ call_authorize(hook, "good", "prices") }, { true, "alice", 0 })
    eq({ call_authorize(hook, "yes") }, { true, "yes", 0 })
    eq({ call_authorize(hook, "bad", "prices") }, { false, "no: bad /spec prices spec-client", 0 })
    eq({ call_authorize(hook, nil, nil) }, { false, "no: nil /spec nil spec-client", 0 })
  end)

  it("an error refuses with 'authorization failed' and is counted", function()
    eq({ call_authorize(function() error("db down") end, "t") }, { false, "authorization failed", 1 })
    eq({ call_authorize(function() return {} end, "t") }, { false, "authorization failed", 1 })
  end)
end)

describe("onClientPublish", function()
  it("allows, refuses and rewrites", function()
    eq({ call_client_publish(function() return true end, "t", "{}") }, { true, nil, 0 })
    eq({ call_client_publish(function() return false end, "t", "{}") }, { false, nil, 0 })
    eq({ call_client_publish(function() end, "t", "{}") }, { false, nil, 0 })
    local allowed, np, errors = call_client_publish(function(c, t, p)
      return true, { v = p.v, by = c.id }
    end, "t", "{\"v\":1}")
    eq({ allowed, sluice.json.decode(np), errors }, { true, { v = 1, by = "spec-client" }, 0 })
  end)

  it("does not decode the payload for a hook that does not take it", function()
    eq({ call_client_publish(function(client, topic) return true end, "t", "{broken") }, { true, nil, 0 })
  end)

  it("an error refuses and is counted", function()
    eq({ call_client_publish(function() error("x") end, "t", "{}") }, { false, nil, 1 })
  end)
end)

describe("coalesceKey", function()
  it("returns strings and numbers as keys, anything else as no key", function()
    eq({ call_coalesce(function(t, p) return p.s end, "t", "{\"s\":\"A\"}") }, { "A", 0 })
    eq({ call_coalesce(function(t, p) return p.n end, "t", "{\"n\":3}") }, { "3", 0 })
    eq({ call_coalesce(function(t, p) return p end, "t", "{}") }, { nil, 0 })
    eq({ call_coalesce(function(t) return t end, "prices", "not json") }, { "prices", 0 })
  end)

  it("an error gives no key and is counted", function()
    local hook = ok(load_script(FIX .. "hook_error.lua"))
    eq({ call_coalesce(hook, "t", "{}") }, { nil, 1 })
  end)
end)

describe("snapshot", function()
  it("keeps the state in the VM between publishes and survives a reload as JSON", function()
    snapshot_reset()
    local hook = function(state, topic, p) state = state or {} state[#state + 1] = p.v return state end
    eq({ call_snapshot(hook, "t", "{\"v\":1}") }, { "[1]", 0, 0 })
    eq({ call_snapshot(hook, "t", "{\"v\":2}") }, { "[1,2]", 0, 0 })
    snapshot_reset()
    eq({ call_snapshot(hook, "t", "{\"v\":9}", "[7,8]") }, { "[7,8,9]", 0, 0 })
    snapshot_reset()
  end)

  it("an error leaves the state and is counted", function()
    snapshot_reset()
    local hook = function(state, topic, p) if p.bad then error("bad") end return { v = p.v } end
    call_snapshot(hook, "t", "{\"v\":1}")
    local json, rc, errors = call_snapshot(hook, "t", "{\"bad\":true}")
    eq(json, nil)
    ok(rc ~= 0)
    eq(errors, 1)
    eq(call_snapshot(function(s) return s end, "t", "{}"), "{\"v\":1}")
    snapshot_reset()
  end)
end)

describe("server events", function()
  it("get one table with the event's fields", function()
    local got
    eq(call_server_event(function(e) got = e end, "{\"clientId\":\"c1\",\"reason\":\"bye\"}"), 0)
    eq(got.clientId, "c1")
    eq(got.reason, "bye")
    eq(call_server_event(function(e) error("oops") end, "{}"), 1)
  end)
end)
