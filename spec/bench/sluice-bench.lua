-- sluice-bench.lua - the Sluice side of `make bench` (spec/bench/run.sh).
--
-- The same producer as spec/bench/baseline-socketio.mjs: namespace /feed, topic "prices",
-- RATE messages/s of SIZE bytes of payload JSON, batched per TICK_MS timer tick. Payload:
--   {"ts":"<wall-clock microseconds>","seq":n,"sym":"S<n%10>","data":"xxx..."}
-- ts is sent as a decimal string so that its 16 digits survive any JSON number formatting
-- (the load generator accepts both a number and a quoted number).
--
-- Environment: PORT (3000), RATE (1000; 0 = no producer), SIZE (100), TICK_MS (10),
-- PRODUCER_DELAY_MS (0), PING_INTERVAL_MS (25000), PING_TIMEOUT_MS (20000),
-- SNDBUF (socketSendBufferBytes, unset = kernel default), HIGH_WATER (socketHighWaterBytes),
-- TLS_CERT / TLS_KEY (PEM files: serve WSS with them, the TLS scenarios),
-- OVERFLOW (DROP_OLDEST), MAX_QUEUED (maxQueuedMessagesPerClient, default 64),
-- RECOVERY ("1": the namespace has recovery = {}, every delivery carries its offset and goes
-- into the history; the recovery-cost scenario),
-- FLUSH_MS (flushIntervalMs, the batching window; 0 = off),
-- HOOKS ("" | "route" | "route_noop" | "coalesce" | "coalesce_path" | "both": Lua hooks for the
-- hook-cost scenario), CLUSTER_REDIS (a redis:// URL: join a cluster on the stream
-- "socket.io", the cluster scenario), CLUSTER_MAXLEN (its maxLen), MAX_QUEUED_BYTES
-- (maxQueuedBytesPerClient).

local function num(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return tonumber(v) or default
end

local PORT = num("PORT", 3000)
local RATE = num("RATE", 1000)
local SIZE = num("SIZE", 100)
local TICK_MS = num("TICK_MS", 10)
local DELAY = num("PRODUCER_DELAY_MS", 0)
local SNDBUF = num("SNDBUF", 0)
local HIGH_WATER = num("HIGH_WATER", 0)
local MAX_QUEUED = num("MAX_QUEUED", 64)
local OVERFLOW = os.getenv("OVERFLOW") or "DROP_OLDEST"
local HOOKS = os.getenv("HOOKS") or ""
local FLUSH_MS = num("FLUSH_MS", 0)

local overhead = #string.format('{"ts":"%d","seq":%d,"sym":"S0","data":""}', 1732740000000000, 1000000)
local filler = string.rep("x", math.max(0, SIZE - overhead))

local feed = {
  path = "/feed",
  topics = { "prices" },
  overflowAction = OVERFLOW,
  maxQueuedMessagesPerClient = MAX_QUEUED,
}
if os.getenv("RECOVERY") == "1" then
  feed.recovery = {}
end
if HOOKS == "coalesce" or HOOKS == "both" then
  feed.coalesceKey = function(topic, payload) return payload.sym end
end
if HOOKS == "coalesce_path" then
  -- the same key by a field path, resolved in C: the coalescing work without the Lua call
  feed.coalesceKey = "sym"
end
if HOOKS == "route_noop" then
  -- the floor of any Lua hook: the call itself, reading nothing (keeps every message)
  feed.route = function(msg) end
end
if HOOKS == "route" or HOOKS == "both" then
  -- a realistic filter: reads one payload field (the third member) and keeps the message
  feed.route = function(msg) if msg.payload.sym == nil then return false end end
end

local server = {
  host = "127.0.0.1",
  port = PORT,
  engineIoTransport = "WEBSOCKET_ONLY",
  pingIntervalMs = num("PING_INTERVAL_MS", 25000),
  pingTimeoutMs = num("PING_TIMEOUT_MS", 20000),
  namespaces = { feed },
  onStart = function(srv)
    if RATE <= 0 then return end
    -- Messages due this tick: RATE x elapsed time minus what was already sent (the same rule as
    -- the socket.io baseline), at most 2 ticks' worth at once; older backlog is skipped.
    local seq, sent, t0 = 0, 0, 0
    local cap = math.max(1, math.ceil(RATE * TICK_MS * 2 / 1000))
    local publish, now_us, now_ms, floor, fmt = sluice.publish, sluice.now_us, sluice.now_ms, math.floor, string.format
    local function produce()
      t0 = now_ms()
      sluice.every(TICK_MS, function()
        local due = floor(RATE * (now_ms() - t0) / 1000)
        if due - sent > cap then sent = due - cap end
        local n = due - sent
        sent = due
        for _ = 1, n do
          seq = seq + 1
          publish("/feed", "prices",
                  { ts = fmt("%d", floor(now_us())), seq = seq, sym = "S" .. (seq % 10), data = filler })
        end
      end)
    end
    if DELAY > 0 then sluice.after(DELAY, produce) else produce() end
  end,
}
if SNDBUF > 0 then server.socketSendBufferBytes = SNDBUF end
if (os.getenv("TLS_CERT") or "") ~= "" then
  -- the TLS scenarios: WSS with the certificate run.sh made (the baseline uses the same files)
  server.transport = "WSS"
  server.tls = { certChainPemPath = os.getenv("TLS_CERT"), privateKeyPemPath = os.getenv("TLS_KEY") }
end
if HIGH_WATER > 0 then server.socketHighWaterBytes = HIGH_WATER end
if (os.getenv("CLUSTER_REDIS") or "") ~= "" then
  server.cluster = { redis = os.getenv("CLUSTER_REDIS") }
  if num("CLUSTER_MAXLEN", 0) > 0 then server.cluster.maxLen = num("CLUSTER_MAXLEN", 0) end
end
if num("MAX_QUEUED_BYTES", 0) > 0 then feed.maxQueuedBytesPerClient = num("MAX_QUEUED_BYTES", 0) end
if FLUSH_MS > 0 then server.flushIntervalMs = FLUSH_MS end

return { servers = { bench = server } }
