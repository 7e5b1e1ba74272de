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

// waitFor: polls cond() until it holds (rejects after ms).
async function waitFor(cond, ms, what) {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms: ${what}`);
    await sleep(20);
  }
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

// ---------------------------------------------------------------- faults

test("Redis unreachable at start: the node serves local publishes, then joins when Redis appears", async () => {
  const port = await freePort();
  const url = `redis://127.0.0.1:${port}`;
  const a = await startNode(url, { streamKey: "late" });
  let r2, b, sa, sb;
  try {
    assert.equal(await waitMetric(a.port, "sluice_cluster_up", {}, (v) => v === 0), 0);
    await a.waitLog(/redis cluster \(127\.0\.0\.1:\d+\) unreachable: Connection refused/);
    sa = await subscriber(a, "/feed", "prices");
    await publish(a.port, { namespace: "/feed", topic: "prices", payload: { n: "local" } });
    assert.deepEqual((await sa.inbox.next())[0], { n: "local" }, "served locally while Redis is away");
    r2 = await startRedis({ port });
    await clusterUp(a);
    b = await startNode(url, { streamKey: "late" });
    await clusterUp(b);
    sb = await subscriber(b, "/feed", "prices");
    await publish(b.port, { namespace: "/feed", topic: "prices", payload: { n: "from-b" } });
    assert.deepEqual((await sa.inbox.next(8000))[0], { n: "from-b" });
    assert.deepEqual((await sb.inbox.next(8000))[0], { n: "from-b" });
    // the publish made while Redis was away was appended when it came (marked delivered)
    assert.ok(r2.cli("XRANGE", "late", "-", "+").includes("local"), "kept, then appended");
  } finally {
    closeAll(...[sa, sb].filter(Boolean).map((x) => x.s));
    await a.stop();
    await b?.stop();
    await r2?.stop();
  }
});

test("Redis killed and restarted: reconnect, resume, append what was kept, 503 past bufferMax", async () => {
  const r3 = await startRedis();
  const cfg = { streamKey: "restart" };
  const [a, b, c] = await Promise.all([startNode(r3.url, cfg), startNode(r3.url, cfg), startNode(r3.url, { ...cfg, bufferMax: 3 })]);
  const socks = [];
  try {
    await Promise.all([a, b, c].map(clusterUp));
    const sa = await subscriber(a, "/feed", "prices");
    const sb = await subscriber(b, "/feed", "prices");
    socks.push(sa.s, sb.s);
    await publish(a.port, { namespace: "/feed", topic: "prices", payload: { n: 0 } });
    await sa.inbox.count(1, 8000);
    await sb.inbox.count(1, 8000);
    await r3.kill("SIGKILL");
    await waitMetric(a.port, "sluice_cluster_up", {}, (v) => v === 0, 8000);
    await waitMetric(c.port, "sluice_cluster_up", {}, (v) => v === 0, 8000);
    // a: kept and delivered locally at once
    await publish(a.port, { namespace: "/feed", topic: "prices", payload: { n: 1, while: "down" } });
    assert.deepEqual((await sa.inbox.until((x) => x[0].n === 1, 5000))[0], { n: 1, while: "down" });
    // c: bufferMax 3, the fourth is refused and counted
    for (let i = 0; i < 3; i++) assert.equal((await api(c.port, { namespace: "/feed", topic: "prices", payload: { c: i } })).status, 200);
    const refused = await api(c.port, { namespace: "/feed", topic: "prices", payload: { c: 3 } });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, "CLUSTER_UNAVAILABLE");
    const mc = await metrics(c.port);
    assert.equal(mval(mc, "sluice_cluster_dropped_total", { reason: "buffer_full" }), 1);
    assert.equal(mval(mc, "sluice_cluster_buffered"), 3);
    await c.waitLog(/bufferMax\): publish on \/feed\/prices refused \(CLUSTER_UNAVAILABLE/);
    await r3.restart(); // same port, empty (no persistence)
    await Promise.all([a, b, c].map(clusterUp));
    // what a and c kept reaches b (appended on return); a does not get its own twice
    await waitFor(() => {
      const got = sb.inbox.items.map((x) => x[0]);
      return got.some((p) => p.n === 1) && new Set(got.filter((p) => p.c !== undefined).map((p) => p.c)).size === 3;
    }, 8000, "b got what a and c kept");
    // a fresh publish on b after the restart reaches a (its reader resumed from its last id)
    await publish(b.port, { namespace: "/feed", topic: "prices", payload: { n: 2 } });
    await sa.inbox.until((x) => x[0].n === 2, 8000);
    await sleep(300);
    assert.equal(sa.inbox.items.filter((x) => x[0].n === 1).length, 1, "a delivered its kept publish once");
    assert.ok(sa.inbox.items.filter((x) => x[0].c !== undefined).length === 3, "a got c's kept publishes");
    assert.equal(await waitMetric(a.port, "sluice_cluster_buffered", {}, (v) => v === 0), 0);
    assert.ok((await metrics(a.port)).some((s) => s.name === "sluice_cluster_reconnects_total" && s.value >= 1));
    await a.waitLog(/redis cluster \(127\.0\.0\.1:\d+\) down: .*reconnecting/);
  } finally {
    closeAll(...socks);
    await Promise.all([a, b, c].map((n) => n.stop()));
    await r3.stop();
  }
});

test("a node killed with kill -9: the others keep serving", async () => {
  const r4 = await startRedis();
  const cfg = { streamKey: "kill" };
  const [a, b, c] = await Promise.all([0, 1, 2].map(() => startNode(r4.url, cfg)));
  const socks = [];
  try {
    await Promise.all([a, b, c].map(clusterUp));
    const sa = await subscriber(a, "/feed", "prices");
    const sb = await subscriber(b, "/feed", "prices");
    const sc = await subscriber(c, "/feed", "prices");
    socks.push(sa.s, sb.s, sc.s);
    c.proc.kill("SIGKILL");
    await new Promise((r) => c.proc.once("close", r));
    for (let i = 0; i < 5; i++) await publish([a, b][i % 2].port, { namespace: "/feed", topic: "prices", payload: { i } });
    assert.deepEqual((await sa.inbox.count(5, 8000)).map((x) => x[0].i), (await sb.inbox.count(5, 8000)).map((x) => x[0].i));
    // a client of the dead node connects to a live one and gets what is published next
    const moved = await subscriber(b, "/feed", "prices");
    socks.push(moved.s);
    await publish(a.port, { namespace: "/feed", topic: "prices", payload: { i: 99 } });
    await moved.inbox.until((x) => x[0].i === 99, 8000);
  } finally {
    closeAll(...socks);
    await Promise.all([a, b].map((n) => n.stop()));
    await r4.stop();
  }
});

test("a stream trimmed past what a slow node read: the gap is logged and counted, no stall", async () => {
  const r5 = await startRedis();
  const cfg = { streamKey: "trim", maxLen: 50, readCount: 10 };
  const [w, slow] = await Promise.all([startNode(r5.url, cfg), startNode(r5.url, cfg)]);
  const socks = [];
  try {
    await Promise.all([w, slow].map(clusterUp));
    const ss = await subscriber(slow, "/feed", "news");
    socks.push(ss.s);
    process.kill(slow.pid, "SIGSTOP");
    const N = 1000;
    try {
      for (let k = 0; k < N / 100; k++) {
        const batch = [];
        for (let i = 0; i < 100; i++) batch.push({ namespace: "/feed", topic: "news", payload: { i: k * 100 + i } });
        await publish(w.port, batch);
      }
    } finally {
      process.kill(slow.pid, "SIGCONT");
    }
    const xlen = Number(r5.cli("XLEN", "trim"));
    assert.ok(xlen < N, `trimmed (XLEN ${xlen})`);
    const lost = await waitMetric(slow.port, "sluice_cluster_entries_lost_total", {}, (v) => v > 0, 10000);
    await slow.waitLog(/stream "trim" was trimmed past the last entry read .* entries lost here/);
    // every entry is either delivered or counted as lost
    await withTimeout((async () => {
      for (;;) {
        const m = await metrics(slow.port);
        if (mval(m, "sluice_cluster_received_total") + mval(m, "sluice_cluster_entries_lost_total") >= N) return;
        await sleep(50);
      }
    })(), 10000, "received + lost = published");
    const m = await metrics(slow.port);
    assert.equal(mval(m, "sluice_cluster_received_total") + mval(m, "sluice_cluster_entries_lost_total"), N);
    assert.ok(lost >= N - xlen - 10, `lost ${lost}`);
    // not stalled: the next publish arrives
    await publish(w.port, { namespace: "/feed", topic: "news", payload: { i: "after" } });
    await ss.inbox.until((x) => x[0].i === "after", 8000);
  } finally {
    closeAll(...socks);
    await Promise.all([w, slow].map((n) => n.stop()));
    await r5.stop();
  }
});
