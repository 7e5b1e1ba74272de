-- rate_limit: an onClientPublish hook limiting how fast each client may publish (a token
-- bucket per client, refilled continuously, sluice.now_ms() as the clock).
--
--   onClientPublish = sluice.script("rate_limit", { rate = 5, burst = 10 })
--   -- 5 messages per second per client, bursts of up to 10; the rest are refused
--
-- Options:
--   rate      messages per second (required, > 0)
--   burst     bucket size (default: rate, at least 1)
--   by        what a bucket belongs to: "client" (default, the socket id), "principal"
--             (all connections of one user share a bucket; falls back to the client id) or
--             "remote" (the peer address)
--   perTopic  true: one bucket per (key, topic)
--   maxKeys   when more buckets than this exist, full ones are swept (default 10000)
--
-- The hook declares (client, topic) only, so the payload is never decoded for it.
local ratelimit = require("ratelimit")

return function(opts)
  opts = opts or {}
  local rate = opts.rate
  if type(rate) ~= "number" or rate <= 0 then
    error("rate_limit: rate (messages per second, > 0) is required", 2)
  end
  local burst = opts.burst or math.max(1, rate)
  if type(burst) ~= "number" or burst < 1 then error("rate_limit: burst must be at least 1", 2) end
  local by = opts.by or "client"
  if by ~= "client" and by ~= "principal" and by ~= "remote" then
    error('rate_limit: by must be "client", "principal" or "remote"', 2)
  end
  local per_topic = opts.perTopic == true
  local max_keys = opts.maxKeys or 10000
  local limiter = ratelimit.new({ rate = rate, burst = burst, clock = opts.clock })

  return function(client, topic)
    local key
    if by == "principal" then
      key = client.principal or client.id
    elseif by == "remote" then
      key = client.remote or client.id
    else
      key = client.id
    end
    if per_topic then key = key .. "\0" .. topic end
    if limiter.count > max_keys then limiter:sweep() end
    return (limiter:allow(key))
  end
end
