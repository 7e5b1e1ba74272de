-- ratelimit: token buckets keyed by anything (client id, remote address, principal).
--
--   local ratelimit = require("ratelimit")
--   local per_client = ratelimit.new({ rate = 5, burst = 10 })   -- 5/s, bursts of 10
--   onClientPublish = function(client, topic, payload)
--     return per_client:allow(client.id)
--   end
--
-- Buckets that are full again are dropped by :sweep(), so memory follows active keys only.
local M = {}
local Limiter = {}
Limiter.__index = Limiter
Limiter.__metatable = false -- shared by every limiter: scripts must not patch it

local function now_ms()
  return sluice.now_ms()
end

-- ratelimit.new{rate = tokens per second, burst = bucket size (default rate), clock = fn}
function M.new(opts)
  assert(type(opts) == "table", "ratelimit.new: options table expected")
  local rate = assert(tonumber(opts.rate), "ratelimit.new: rate (tokens per second) required")
  assert(rate > 0, "ratelimit.new: rate must be positive")
  local burst = tonumber(opts.burst) or rate
  assert(burst >= 1, "ratelimit.new: burst must be at least 1")
  return setmetatable({ rate = rate, burst = burst, clock = opts.clock or now_ms,
                        buckets = {}, count = 0 }, Limiter)
end

-- limiter:allow(key [, cost]) -> true, or false and the milliseconds until it would pass
function Limiter:allow(key, cost)
  cost = cost or 1
  local now = self.clock()
  local b = self.buckets[key]
  if not b then
    b = { tokens = self.burst, at = now }
    self.buckets[key] = b
    self.count = self.count + 1
  else
    local refill = (now - b.at) * self.rate / 1000
    b.tokens = math.min(self.burst, b.tokens + refill)
    b.at = now
  end
  if b.tokens >= cost then
    b.tokens = b.tokens - cost
    return true
  end
  return false, math.ceil((cost - b.tokens) * 1000 / self.rate)
end

-- limiter:sweep() drops buckets that have refilled completely; returns how many remain
function Limiter:sweep()
  local now = self.clock()
  for key, b in pairs(self.buckets) do
    if b.tokens + (now - b.at) * self.rate / 1000 >= self.burst then
      self.buckets[key] = nil
      self.count = self.count - 1
    end
  end
  return self.count
end

return M
