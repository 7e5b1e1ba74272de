// cluster.test.mjs - three Sluice nodes sharing one real redis-server (spec/e2e/redis.mjs)
// through the Redis stream of the `cluster` key (README "Cluster"): clients (real
// socket.io-client) on every node receive publishes made on any node (HTTP API, Lua
// sluice.publish, a client's publish event), in BEST_EFFORT and AT_LEAST_ONCE (acked on the
// receiving node), in the same order on every node; and the faults: Redis unreachable at
// start, Redis killed and restarted, the bounded buffer (503 CLUSTER_UNAVAILABLE), a node
// killed with kill -9, a stream trimmed past what a node read.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { startServer, writeConfig, assertCleanExit, client, connected, closeAll, Inbox, api, publish, sleep, withTimeout } from "./helpers.mjs";
import { serverConfig, lua, metrics, mval, waitMetric } from "./delivery-helpers.mjs";
import { startRedis, freePort } from "./redis.mjs";

const NAMESPACES = [
  { path: "/feed", topics: ["prices", "news"], overflowAction: "DROP_OLDEST", maxQueuedMessagesPerClient: 2000,
    clientPublish: true,
    onEvent: lua("function(client, event, args, ack) if event == 'luapub' then sluice.publish('/feed', 'prices', args[1]) end " +
      "if event == 'luaburst' then for i = 1, args[1] do sluice.publish('/feed', 'news', { i = i }) end end " +
      "if ack then ack(true) end end") },
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

// stopClean: stop a node (SIGTERM) and check it exited cleanly: status 0, no sanitizer report.
const stopClean = async (node) => assertCleanExit(await node.stop());

const clusterUp = (node) => waitMetric(node.port, "sluice_cluster_up", {}, (v) => v === 1, 10000);

let redis;
let nodes = [];

before(async () => {
  redis = await startRedis();
  nodes = await Promise.all([0, 1, 2].map(() => startNode(redis.url)));
  await Promise.all(nodes.map(clusterUp));
});

after(async () => {
  await Promise.all(nodes.map(stopClean));
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

test("the publishes of one loop iteration reach every other node in one XREAD reply (MULTI/EXEC)", async () => {
  // 50 sluice.publish calls in one Lua call on node 0: one transaction, so node 1 and node 2
  // are woken once with all 50 entries (a plain pipeline woke them with the first entry, then
  // again with the other 49) and write them to each client together.
  const subs = await Promise.all(nodes.map((n) => subscriber(n, "/feed", "news")));
  const pub = client(`http://127.0.0.1:${nodes[0].port}/feed`, { transports: ["websocket"] });
  try {
    await connected(pub);
    const m0 = await Promise.all(nodes.map((n) => metrics(n.port)));
    await withTimeout(new Promise((r) => pub.emit("luaburst", 50, r)), 5000, "luaburst");
    const got = await Promise.all(subs.map((x) => x.inbox.count(50, 10000)));
    for (const items of got) assert.deepEqual(items.map((a) => a[0].i), Array.from({ length: 50 }, (_, i) => i + 1));
    const m1 = await Promise.all(nodes.map((n) => metrics(n.port)));
    for (const k of [0, 1, 2]) {
      const d = (name) => mval(m1[k], name) - mval(m0[k], name);
      assert.equal(d("sluice_cluster_received_total"), 50, `node ${k} delivered the 50 entries`);
      assert.equal(d("sluice_cluster_reads_total"), 1, `node ${k} read them in one XREAD reply`);
    }
  } finally {
    closeAll(pub, ...subs.map((x) => x.s));
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
    await stopClean(a);
    if (b) await stopClean(b);
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
    // a client's publish event and Lua's sluice.publish are refused the same way
    const pc = client(`http://127.0.0.1:${c.port}/feed`, { transports: ["websocket"] });
    socks.push(pc);
    await connected(pc);
    const errEv = new Promise((r) => pc.once("error", r));
    pc.emit("publish", { topic: "prices", payload: { c: "client" } });
    assert.equal((await withTimeout(errEv, 5000, "error event")).code, "CLUSTER_UNAVAILABLE");
    pc.emit("luapub", { c: "lua" });
    await c.waitLog(/publish \/feed prices: CLUSTER_UNAVAILABLE \(Redis unreachable, buffer full\)/);
    assert.equal(mval(await metrics(c.port), "sluice_cluster_dropped_total", { reason: "buffer_full" }), 3);
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
    await Promise.all([a, b, c].map(stopClean));
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
    await Promise.all([a, b].map(stopClean));
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
    // the API answers before Redis confirms the appends: read XLEN once all N are in the stream
    await waitMetric(w.port, "sluice_cluster_published_total", {}, (v) => v >= N, 10000);
    const xlen = Number(r5.cli("XLEN", "trim"));
    assert.ok(xlen < N, `trimmed (XLEN ${xlen})`);
    await waitMetric(slow.port, "sluice_cluster_entries_lost_total", {}, (v) => v > 0, 10000);
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
    const lost = mval(m, "sluice_cluster_entries_lost_total"); // a lower bound until caught up
    assert.equal(mval(m, "sluice_cluster_received_total") + lost, N);
    // at most what was left in the stream, plus what the node had read before it stopped
    assert.ok(lost >= N - xlen - 50, `lost ${lost}, XLEN ${xlen}`);
    // not stalled: the next publish arrives
    await publish(w.port, { namespace: "/feed", topic: "news", payload: { i: "after" } });
    await ss.inbox.until((x) => x[0].i === "after", 8000);
  } finally {
    closeAll(...socks);
    await Promise.all([w, slow].map(stopClean));
    await r5.stop();
  }
});

// The demo's nodes listen on BASE_PORT, +1, +2: three ports picked below the kernel's
// ephemeral range (where every port a socket on this machine is given comes from: a base
// drawn inside it met "address already in use" on a busy machine), each free right now.
async function demoBasePort() {
  const { readFileSync } = await import("node:fs");
  const net = await import("node:net");
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || low;
  } catch { /* not Linux: the usual default */ }
  const free = (port) => new Promise((resolve) => {
    const s = net.createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
  const span = Math.max(low - 3 - 10000, 1000);
  for (let tries = 0; tries < 100; tries++) {
    const bp = 10000 + Math.floor(Math.random() * span);
    if ((await free(bp)) && (await free(bp + 1)) && (await free(bp + 2))) return bp;
  }
  throw new Error("no three consecutive free ports found for the cluster demo");
}

test("examples/cluster/run.sh (make cluster-demo): a publish on node 0 reaches a client on node 2", async () => {
  const { spawnSync } = await import("node:child_process");
  const { ROOT } = await import("./helpers.mjs");
  const [rp, bp] = [await freePort(), await demoBasePort()];
  const r = spawnSync("bash", ["examples/cluster/run.sh"], {
    cwd: ROOT, env: { ...process.env, REDIS_PORT: String(rp), BASE_PORT: String(bp) }, timeout: 150000, encoding: "utf8", // the script's own deadlines add up to about 100 s
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`client on node :${bp + 2} received \\{"symbol":"X","price":3,"from":"node :${bp}"\\}`));
  assert.match(r.stdout, /sluice_cluster_nodes\{namespace="\/feed"\} 3/);
});

test("reload: an unchanged cluster block keeps the links, a changed one reconnects", async () => {
  const r6 = await startRedis();
  const file = writeConfig(nodeConfig(r6.url, { streamKey: "one" }));
  const a = await startServer(null, { file });
  const b = await startNode(r6.url, { streamKey: "two" });
  const socks = [];
  try {
    await Promise.all([a, b].map(clusterUp));
    const reload = async () => {
      const n = (a.stderr().match(/configuration reloaded/g) || []).length;
      const res = await fetch(`http://127.0.0.1:${a.port}/api/reload`, { method: "POST", headers: { "content-type": "application/json" } });
      assert.equal(res.status, 200, await res.text());
      await waitFor(() => (a.stderr().match(/configuration reloaded/g) || []).length > n, 5000, "reload logged");
    };
    // the same block (another key changed): nothing reconnects
    writeFileSync(file, nodeConfig(r6.url, { streamKey: "one" }).replace("drainTimeoutMs = 500", "drainTimeoutMs = 600"));
    await reload();
    assert.doesNotMatch(a.stderr(), /cluster block changed/);
    assert.equal((a.stderr().match(/cluster node "/g) || []).length, 1, "one node started");
    // another stream: a new node, reading "two", where b publishes
    writeFileSync(file, nodeConfig(r6.url, { streamKey: "two" }));
    await reload();
    await a.waitLog(/the cluster block changed: reconnecting/);
    await clusterUp(a);
    const sa = await subscriber(a, "/feed", "prices");
    socks.push(sa.s);
    await publish(b.port, { namespace: "/feed", topic: "prices", payload: { on: "two" } });
    assert.deepEqual((await sa.inbox.next(8000))[0], { on: "two" });
  } finally {
    closeAll(...socks);
    await Promise.all([a, b].map(stopClean));
    await r6.stop();
  }
});

test("snapshot: the state built on the origin is every node's, and each node's hook goes on from it", async () => {
  const r7 = await startRedis();
  const prelude = "local function merge(state, topic, payload) state = state or {} for k, v in pairs(payload) do state[k] = v end return state end";
  const cfg = (url) => serverConfig(
    [{ path: "/merge", topics: ["t"], overflowAction: "REJECT_NEW", snapshot: lua("merge") }],
    { cluster: { redis: url, streamKey: "snap", blockMs: 500 } }, prelude);
  const [a, b] = await Promise.all([startServer(cfg(r7.url)), startServer(cfg(r7.url))]);
  const socks = [];
  try {
    await Promise.all([a, b].map(clusterUp));
    const wa = await subscriber(a, "/merge", "t");
    const wb = await subscriber(b, "/merge", "t");
    socks.push(wa.s, wb.s);
    let n = 0;
    for (const [node, payload] of [[a, { a: 1 }], [b, { b: 2 }], [a, { a: 3 }]]) {
      await publish(node.port, { namespace: "/merge", topic: "t", payload });
      n++;
      await wa.inbox.count(n, 8000); // both nodes have it before the next publish
      await wb.inbox.count(n, 8000);
    }
    for (const node of [a, b]) {
      const late = await subscriber(node, "/merge", "t");
      socks.push(late.s);
      assert.deepEqual((await late.inbox.next(8000))[0], { a: 3, b: 2 }, `state on :${node.port}`);
    }
  } finally {
    closeAll(...socks);
    await Promise.all([a, b].map(stopClean));
    await r7.stop();
  }
});

test("links killed mid-stream (CLIENT KILL): every publish delivered exactly once on every node", async () => {
  const r8 = await startRedis();
  const cfg = { streamKey: "killed" };
  const [a, b] = await Promise.all([startNode(r8.url, cfg), startNode(r8.url, cfg)]);
  const socks = [];
  try {
    await Promise.all([a, b].map(clusterUp));
    const sa = await subscriber(a, "/feed", "news");
    const sb = await subscriber(b, "/feed", "news");
    socks.push(sa.s, sb.s);
    const N = 2000;
    const posting = (async () => {
      for (let k = 0; k < N / 100; k++) {
        const batch = [];
        for (let i = 0; i < 100; i++) batch.push({ namespace: "/feed", topic: "news", payload: { i: k * 100 + i } });
        await publish(a.port, batch);
        if (k % 5 === 2) await sleep(20);
      }
    })();
    for (let j = 0; j < 3; j++) {
      await sleep(30);
      r8.cli("CLIENT", "KILL", "TYPE", "normal"); // the write and read links of both nodes
    }
    await posting;
    // XADDs sent and never answered (Redis paused, then the link killed): appended again
    await Promise.all([a, b].map(clusterUp));
    r8.cli("CLIENT", "PAUSE", "3000", "WRITE");
    const batch = [];
    for (let i = 0; i < 100; i++) batch.push({ namespace: "/feed", topic: "news", payload: { i: N + i } });
    await publish(a.port, batch); // answered once the XADDs are written, not executed
    await sleep(100);
    r8.cli("CLIENT", "KILL", "TYPE", "normal");
    r8.cli("CLIENT", "UNPAUSE");
    await a.waitLog(/\d+ publish\(es\) kept until Redis is back/);
    for (const x of [sa, sb]) {
      await x.inbox.count(N + 100, 15000);
      await sleep(300);
      const seen = x.inbox.items.map((it) => it[0].i);
      assert.equal(new Set(seen).size, N + 100, "every publish");
      assert.equal(seen.length, N + 100, "none twice");
    }
    const ma = await metrics(a.port);
    assert.ok(mval(ma, "sluice_cluster_reconnects_total") >= 1);
  } finally {
    closeAll(...socks);
    await Promise.all([a, b].map(stopClean));
    await r8.stop();
  }
});
