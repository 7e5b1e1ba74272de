describe("client objects", function()
  it("expose id, namespace, remote, transport and per-client data", function()
    local seen
    ok(fake_event(function(client)
      seen = { client.id, client.namespace, client.remote, client.transport, client.principal }
      client.data.nick = "ann"
    end, "hello", "[]"))
    eq(seen, { "spec-client", "/spec", "127.0.0.1", "websocket" })
    local same
    fake_event(function(client) same = client.data.nick end, "again", "[]")
    eq(same, "ann")
  end)

  it("answer an ack at most once", function()
    fake_reset()
    local second
    ok(fake_event(function(client, event, args, ack)
      ack({ ok = true })
      second = ack("again")
    end, "rpc", "[]", 9))
    eq(second, false)
    local calls = fake_calls()
    eq(#calls, 1)
    eq(calls[1].json, "[{\"ok\":true}]")
  end)

  it("have no ack when the client asked none", function()
    local a = "unset"
    fake_event(function(_, _, _, ack) a = ack end, "x", "[]")
    eq(a, nil)
  end)

  it("raise 'client is gone' once the core freed the socket", function()
    local kept
    fake_event(function(client) kept = client end, "x", "[]")
    fake_gone()
    raises(function() return kept.id end, "client is gone")
    raises(function() kept:emit("x") end, "client is gone")
    eq(tostring(kept), "client (gone)")
  end)

  it("count an error in a hook without stopping anything", function()
    eq(fake_event(function() error("hook failed") end, "x", "[]"), false)
    eq(fake_event(function() end, "x", "[]"), true)
  end)
end)
