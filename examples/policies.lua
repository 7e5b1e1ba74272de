-- policies.lua - the policy scripts shipped in scripts/, wired into one gateway.
--
--   JWT_SECRET=... build/sluice examples/policies.lua     (SLUICE_PORT=4000 to change the port)
--
-- sluice.script(NAME, options) loads scripts/NAME.lua in its own sandbox and calls the
-- constructor it returns; names resolve next to this file (examples/scripts/), then in
-- $SLUICE_SCRIPTS_DIR, then in the scripts/ directory shipped with the sluice binary.
--
-- /market  prices coalesced per (symbol, venue): a slow client keeps only the latest quote
--          for each instrument; "book" keeps a deep-merged snapshot that new subscribers get
--          first. Subscribing needs a JWT (HS256) whose `topics` claim lists the topic.
-- /orders  clients publish orders (rate limited to 5/s per client, bursts of 10); each order
--          is routed to "orders.<region>". Subscribing needs one of the static tokens.

local port = tonumber(os.getenv("SLUICE_PORT") or "") or 3002
local jwt_secret = os.getenv("JWT_SECRET")
if not jwt_secret or #jwt_secret < 16 then
  jwt_secret = "dev-only-secret-change-me" -- a real deployment sets JWT_SECRET
end

return {
  servers = {
    policies = {
      host = "127.0.0.1",
      port = port,
      auth = "TOKEN",
      namespaces = {
        {
          path = "/market",
          topics = { "prices", "book" },
          overflowAction = "COALESCE",
          coalesce = true,
          authRequired = true,
          coalesceKey = sluice.script("coalesce_key", { fields = { "symbol", "venue" } }),
          snapshot = sluice.script("snapshot_merge"),
          authorize = sluice.script("jwt_hs256", {
            secret = jwt_secret,
            audience = "sluice",
            topicsClaim = "topics",
          }),
        },
        {
          path = "/orders",
          topics = { "orders", "orders.eu", "orders.us", "orders.apac" },
          deliveryMode = "AT_LEAST_ONCE",
          maxRetries = 3,
          clientPublish = true,
          authRequired = true,
          authorize = sluice.script("static_tokens", {
            tokens = { ["desk-eu-token"] = "desk-eu", ["desk-us-token"] = "desk-us" },
          }),
          onClientPublish = sluice.script("rate_limit", { rate = 5, burst = 10 }),
          route = sluice.script("route_by_field", { field = "region", only = { "orders" } }),
        },
      },
    },
  },
}
