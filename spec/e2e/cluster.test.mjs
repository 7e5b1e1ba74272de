// cluster.test.mjs - three Sluice nodes sharing one real redis-server (spec/e2e/redis.mjs)
// through the Redis stream of the `cluster` key (README "Cluster"): clients (real
// socket.io-client) on every node receive publishes made on any node (HTTP API, Lua
// sluice.publish, a client's publish event), in BEST_EFFORT and AT_LEAST_ONCE (acked on the
// receiving node), in the same order on every node; and the faults: Redis unreachable at
// start, Redis killed and restarted, the bounded buffer (503 CLUSTER_UNAVAILABLE), a node
// killed with kill -9, a stream trimmed past what a node read.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, client, connected, closeAll, Inbox, api, publish, sleep, withTimeout } from "./helpers.mjs";
import { serverConfig, lua, metrics, mval, waitMetric } from "./delivery-helpers.mjs";
import { startRedis, freePort } from "./redis.mjs";

const NAMESPACES = [
  { path: "/feed", topics: ["prices", "news"], overflowAction: "DROP_OLDEST", maxQueuedMessagesPerClient: 2000,
    clientPublish: true,
    onEvent: lua("function(client, event, args, ack) if event == 'luapub' then sluice.publish('/feed', 'prices', args[1]) end if ack then ack(true) end end") },
  { path: "/alo", topics: ["orders"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW",
    maxQueuedMessagesPerClient: 2000, maxInFlight: 100, ackTimeoutMs: 500, maxRetries: 5 },
];

function nodeConfig(redisUrl, cluster = {}) {
  return serverConfig(NAMESPACES, {
    socketHighWaterBytes: 1 << 20, socketSendBufferBytes: 0,
    cluster: { redis: redisUrl, streamKey: "sluice-test", blockMs: 500, ...cluster },
  });
}

async function startNode(redisUrl, cluster) {
  return startServer(nodeConfig(redisUrl, cluster));
}

async function subscriber(node, ns, topic, opts = {}) {
  const s = client(`http://127.0.0.1:${node.port}${ns}`, { transports: ["websocket"], ...opts });
  await connected(s);
  const inbox = new Inbox(s, topic);
  await withTimeout(new Promise((r) => s.emit("subscribe", { topic }, r)), 5000, "subscribe ack");
  return { s, inbox };
}

const clusterUp = (node) => waitMetric(node.port, "sluice_cluster_up", {}, (v) => v === 1, 10000);

let redis;
let nodes = [];

before(async () => {
  redis = await startRedis();
  nodes = await Promise.all([0, 1, 2].map(() => startNode(redis.url)));
  await Promise.all(nodes.map(clusterUp));
});

after(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  await redis?.stop();
});

test("a publish on any node reaches subscribers on every node, in the same order", async () => {
  const subs = await Promise.all(nodes.map((n) => subscriber(n, "/feed", "prices")));
  try {
    // API on node 0, Lua on node 1, a client's publish event on node 2, interleaved
    const pubA = client(`http://127.0.0.1:${nodes[1].port}/feed`, { transports: ["websocket"] });
    const pubC = client(`http://127.0.0.1:${nodes[2].port}/feed`, { transports: ["websocket"] });
    await Promise.all([connected(pubA), connected(pubC)]);
    const N = 30;
    const sent = [];
    for (let i = 0; i < N; i++) {
      const k = i % 3;
      const payload = { i, via: ["api", "lua", "client"][k] };
      sent.push(payload);
      if (k === 0) await publish(nodes[0].port, { namespace: "/feed", topic: "prices", payload });
      else if (k === 1) await withTimeout(new Promise((r) => pubA.emit("luapub", payload, r)), 5000, "luapub");
      else await withTimeout(new Promise((r) => pubC.emit("publish", { topic: "prices", payload }, r)), 5000, "publish");
    }
    const got = await Promise.all(subs.map((x) => x.inbox.count(N, 10000)));
    const orders = got.map((items) => items.map((a) => a[0].i));
    assert.deepEqual(orders[0].slice().sort((a, b) => a - b), sent.map((p) => p.i), "every publish once");
    assert.deepEqual(orders[1], orders[0], "node 1 in node 0's order");
    assert.deepEqual(orders[2], orders[0], "node 2 in node 0's order");
    assert.deepEqual(got[2].map((a) => a[0].via).filter((v) => v === "lua").length, N / 3);
    closeAll(pubA, pubC);
    const m = await metrics(nodes[0].port);
    assert.ok(mval(m, "sluice_cluster_received_total") >= N);
    assert.ok(mval(m, "sluice_cluster_published_total") >= N / 3);
  } finally {
    closeAll(...subs.map((x) => x.s));
  }
});

test("AT_LEAST_ONCE: the origin's message id, acked on the receiving node, no retries after the ack", async () => {
  const subs = await Promise.all(nodes.map((n) => subscriber(n, "/alo", "orders")));
  try {
    for (const x of subs) x.s.on("orders", (p, meta) => x.s.emit("ack", { topic: "orders", messageId: meta.messageId }));
    const ids = [];
    for (let i = 0; i < 10; i++)
      ids.push(...(await publish(nodes[i % 3].port, { namespace: "/alo", topic: "orders", payload: { i } })));
    const got = await Promise.all(subs.map((x) => x.inbox.count(10, 10000)));
    for (const items of got) {
      assert.deepEqual(items.map((a) => a[1].messageId), got[0].map((a) => a[1].messageId), "same ids, same order");
      assert.deepEqual(items.map((a) => a[1].messageId).sort(), ids.slice().sort(), "the origin's ids");
      assert.ok(items.every((a) => a[1].ackRequired === true));
    }
    await sleep(1200); // past ackTimeoutMs: acked messages are not sent again
    for (const x of subs) assert.equal(x.inbox.items.length, 10, "no retry after the ack");
  } finally {
    closeAll(...subs.map((x) => x.s));
  }
});

test("node counting: /api/stats and /metrics report the three nodes", async () => {
  await waitMetric(nodes[0].port, "sluice_cluster_nodes", { namespace: "/feed" }, (v) => v === 3, 12000);
  const st = await (await fetch(`http://127.0.0.1:${nodes[1].port}/api/stats`)).json();
  assert.equal(st.servers[0].cluster.up, true);
  assert.ok(st.servers[0].cluster.uid.startsWith("sluice-"));
});
