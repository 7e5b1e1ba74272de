-- ticker.lua - what `make run` starts: a price feed and a tiny chat/RPC app, all in Lua.
--
--   build/sluice examples/ticker.lua            (SLUICE_PORT=4000 to change the port)
--   node examples/client.mjs                    (prints the ticks)
--
-- /feed: clients `subscribe` {topic = "prices"}; a timer publishes a random walk for a few
-- symbols every 200 ms. BEST_EFFORT + DROP_OLDEST: a slow client skips old ticks instead of
-- making the gateway hold them.
-- /chat: application events handled in Lua: "echo" sends the arguments back, "rpc" answers
-- through the Socket.IO ack.

local port = tonumber(os.getenv("SLUICE_PORT") or "") or 3000

local symbols = { ACME = 100.0, GLOBEX = 42.0, INITECH = 12.5, UMBRELLA = 230.0 }

local function tick()
  for symbol, price in pairs(symbols) do
    -- a bounded random walk, rounded to cents
    price = math.max(0.01, price * (1 + (math.random() - 0.5) * 0.004))
    price = math.floor(price * 100 + 0.5) / 100
    symbols[symbol] = price
    sluice.publish("/feed", "prices", { symbol = symbol, price = price, ts = sluice.now_ms() })
  end
end

local rpc = {
  time = function() return { now = sluice.now_ms() } end,
  add = function(params) return { sum = (tonumber(params.a) or 0) + (tonumber(params.b) or 0) } end,
  stats = function() return sluice.stats() end,
}

return {
  servers = {
    main = {
      host = "127.0.0.1",
      port = port,
      onStart = function(server)
        sluice.log.info("ticker: publishing prices on", server.name, "port", server.port)
        sluice.every(200, tick)
      end,
      namespaces = {
        {
          path = "/feed",
          topics = { "prices" },
          deliveryMode = "BEST_EFFORT",
          overflowAction = "DROP_OLDEST",
          maxQueuedMessagesPerClient = 256,
        },
        {
          path = "/chat",
          topics = { "messages" },
          clientPublish = true,
          onEvent = function(client, event, args, ack)
            if event == "echo" then
              client:emit("echo", unpack(args))
            elseif event == "rpc" then
              local call = args[1] or {}
              local fn = type(call) == "table" and rpc[call.method]
              if not ack then return end
              if fn then
                ack({ ok = true, result = fn(call.params or {}) })
              else
                ack({ ok = false, error = "unknown method " .. tostring(call.method) })
              end
            end
          end,
        },
      },
    },
  },
}
