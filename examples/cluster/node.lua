-- examples/cluster/node.lua - one node of a Sluice cluster (README "Cluster"). Every node
-- runs this same file; the environment says where:
--   SLUICE_PORT   this node's port (default 3000)
--   REDIS_URL     the Redis they share (default redis://127.0.0.1:6379)
-- A publish on any node (HTTP API, Lua, a client's publish event) reaches the subscribers of
-- every node, in the same order everywhere.
return {
  servers = {
    node = {
      host = "127.0.0.1",
      port = tonumber(os.getenv("SLUICE_PORT")) or 3000,
      cluster = {
        redis = os.getenv("REDIS_URL") or "redis://127.0.0.1:6379",
        streamKey = "sluice-demo", -- the adapter's default is "socket.io"
        maxLen = 10000,
      },
      namespaces = {
        { path = "/feed", topics = { "prices" }, overflowAction = "DROP_OLDEST", clientPublish = true },
        { path = "/orders", topics = { "order" }, deliveryMode = "AT_LEAST_ONCE", maxRetries = 3 },
      },
    },
  },
}
