// recovery-cluster.test.mjs - connection-state recovery on a cluster node (README
// "Connection-state recovery", "Cluster"): with a real redis-server and two Sluice nodes on one
// stream, the offset of every delivery is its stream entry id, and a client cut from node A
// recovers on node A what was published on node B meanwhile, in stream order; a client cut
// from node A and sent to node B recovers there (the session taken from Redis,
// sio:session:<pid>, the replay from node B's copy of the stream).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import { startServer, publish, sleep, withTimeout, assertCleanExit } from "./helpers.mjs";
import { serverConfig, waitMetric, metric } from "./delivery-helpers.mjs";
import { startRedis } from "./redis.mjs";
import { CutProxy } from "./recovery-helpers.mjs";

let redis, a, b, pxA, pxB;
const NS = [{ path: "/r", topics: ["t"], maxQueuedMessagesPerClient: 1000, recovery: { maxDisconnectionMs: 10000 } },
  { path: "/alo", topics: ["t"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW", maxRetries: 5,
    ackTimeoutMs: 20000, maxInFlight: 4, maxQueuedMessagesPerClient: 100, recovery: { maxDisconnectionMs: 10000 } },
  { path: "/short", topics: ["t"], deliveryMode: "AT_LEAST_ONCE", maxRetries: 5, ackTimeoutMs: 20000, maxInFlight: 2,
    maxQueuedMessagesPerClient: 100, recovery: { maxDisconnectionMs: 1500 } }];
const cfg = (url) => serverConfig(NS, { cluster: { redis: url, streamKey: "sluice-recovery", blockMs: 200 } });

before(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([startServer(cfg(redis.url)), startServer(cfg(redis.url))]);
  await Promise.all([a, b].map((n) => waitMetric(n.port, "sluice_cluster_up", {}, (v) => v === 1, 10000)));
  pxA = new CutProxy(a.port);
  pxB = new CutProxy(b.port);
  await Promise.all([pxA.listen(), pxB.listen()]);
});

after(async () => {
  await pxA?.close();
  await pxB?.close();
  for (const n of [a, b]) if (n) assertCleanExit(await n.stop());
  await redis?.stop();
});

async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${typeof what === "function" ? what() : what}`);
    await sleep(10);
  }
}

// caughtUp: every publish made so far is in the stream (no node holds one unconfirmed: the
// API answers before Redis does), and node has read the stream up to its last entry, so
// what was published is in its history. The tests wait for this instead of a fixed time.
async function caughtUp(node, ms = 10000) {
  for (const n of [a, b]) await waitMetric(n.port, "sluice_cluster_buffered", {}, (v) => v === 0, ms);
  const info = redis.cli("XINFO", "STREAM", "sluice-recovery").split("\n").map((l) => l.trim());
  const last = info[info.indexOf("last-generated-id") + 1].split("-").map(Number);
  const read = async () => {
    const st = await (await fetch(`http://127.0.0.1:${node.port}/api/stats`)).json();
    const id = st.servers[0].cluster.lastId.split("-").map(Number);
    return id[0] > last[0] || (id[0] === last[0] && id[1] >= last[1]);
  };
  await waitFor(read, ms, `node on port ${node.port} to read the stream up to ${last.join("-")}`);
}

// stored: the session of pid kept by the node it left is in Redis (where another node takes
// it from): reconnecting elsewhere before that would find no session.
const stored = (pid) => waitFor(() => redis.cli("EXISTS", `sio:session:${pid}`).trim() === "1", 5000, "the session in Redis");

// moveTo: the client's next connection goes to port (the load balancer sends it to another
// node), then node A's proxy lets connections through again. Not before: a reconnection
// attempt already on its way to node A when the address changed, accepted by the proxy once
// released, would recover on node A (seen: recovered, but node B counted nothing).
async function moveTo(s, port) {
  s.io.uri = `http://127.0.0.1:${port}`;
  s.io.opts.port = String(port);
  try {
    await withTimeout(new Promise((r) => s.once("connect", r)), 5000, `reconnect on port ${port}`);
  } finally {
    pxA.release();
  }
}

test("offsets are stream entry ids; a client cut from node A recovers there what node B published", async () => {
  const s = io(`http://127.0.0.1:${pxA.port}/r`, { forceNew: true, transports: ["websocket"],
    reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 });
  const got = [];
  s.on("t", (...args) => got.push(args));
  try {
    await withTimeout(new Promise((r) => s.once("connect", r)), 5000, "connect");
    assert.equal((await s.timeout(5000).emitWithAck("subscribe", { topic: "t" })).ok, true);
    await publish(b.port, [1, 2, 3].map((payload) => ({ namespace: "/r", topic: "t", payload })));
    await waitFor(() => got.length >= 3, 5000, "3 deliveries");
    for (const g of got) assert.match(g.at(-1), /^\d+-\d+$/); // a Redis stream entry id
    const id = s.id;
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    for (let i = 4; i <= 53; i += 10) {
      await publish(b.port, Array.from({ length: 10 }, (_, k) => ({ namespace: "/r", topic: "t", payload: i + k })));
    }
    await caughtUp(a); // node A read them from the stream: they are in its history
    const back = new Promise((r) => s.once("connect", r));
    pxA.release();
    await withTimeout(back, 5000, "reconnect");
    assert.equal(s.recovered, true);
    assert.equal(s.id, id);
    await waitFor(() => got.length >= 53, 5000, "53 deliveries");
    await sleep(100);
    assert.deepEqual(got.map((g) => g[0]), Array.from({ length: 53 }, (_, i) => i + 1));
    const offs = got.map((g) => g.at(-1).split("-").map(Number));
    for (let i = 1; i < offs.length; i++) {
      assert.ok(offs[i][0] > offs[i - 1][0] || (offs[i][0] === offs[i - 1][0] && offs[i][1] > offs[i - 1][1]), "stream order");
    }
    assert.equal(await metric(a.port, "sluice_recoveries_total", { namespace: "/r", result: "recovered" }), 1);
  } finally { s.close(); }
});

test("disconnected from node A, reconnected to node B: recovered there, same id, nothing missed", async () => {
  const s = io(`http://127.0.0.1:${pxA.port}/r`, { forceNew: true, transports: ["websocket"],
    reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 });
  const got = [];
  s.on("t", (p) => got.push(p));
  let other;
  try {
    await withTimeout(new Promise((r) => s.once("connect", r)), 5000, "connect");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "t" });
    await publish(b.port, [{ namespace: "/r", topic: "t", payload: "x" }]);
    await waitFor(() => got.length >= 1, 5000, "one delivery");
    const id = s.id, pid = s._pid;
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    assert.equal(await metric(a.port, "sluice_recovery_sessions", { namespace: "/r" }), 1);
    // kept in Redis as the adapter does, with an expiry of maxDisconnectionMs plus a margin
    // (the node that kept it takes the record back at its own expiry)
    await stored(pid);
    const ttl = Number(redis.cli("PTTL", `sio:session:${pid}`).trim());
    assert.ok(ttl > 10000 && ttl <= 20000, `PTTL ${ttl}`);
    const rec = JSON.parse(redis.cli("GET", `sio:session:${pid}`));
    assert.ok(Math.abs(Number(rec.expires) - (Date.now() + 10000)) < 2000, `expires ${rec.expires}`);
    await publish(a.port, Array.from({ length: 20 }, (_, i) => ({ namespace: "/r", topic: "t", payload: i })));
    await caughtUp(b); // node B read them from the stream
    await moveTo(s, pxB.port); // the load balancer sends it there
    assert.equal(s.recovered, true);
    assert.equal(s.id, id);
    await waitFor(() => got.length >= 21, 5000, "21 deliveries");
    await publish(a.port, [{ namespace: "/r", topic: "t", payload: "live" }]);
    await waitFor(() => got.length >= 22, 5000, "the live delivery on node B");
    await sleep(100);
    assert.deepEqual(got, ["x", ...Array.from({ length: 20 }, (_, i) => i), "live"]);
    assert.equal(await metric(b.port, "sluice_recoveries_total", { namespace: "/r", result: "recovered" }), 1);
    assert.equal(redis.cli("EXISTS", `sio:session:${pid}`).trim(), "0"); // taken (GETDEL)
    // the session was taken: presenting the pid again on node A recovers nothing there,
    // and node A lets its stale copy go
    other = io(`http://127.0.0.1:${a.port}/r`, { forceNew: true, transports: ["websocket"], auth: { pid, offset: "1-0" } });
    await withTimeout(new Promise((r) => other.once("connect", r)), 5000, "connect on A");
    assert.notEqual(other.id, id);
    assert.equal(await metric(a.port, "sluice_recovery_sessions", { namespace: "/r" }), 0);
  } finally { s.close(); other?.close(); }
});


// Node B never read what the client missed (it started after those messages were published):
// the replay can only come from Redis (XRANGE after the client's offset).
test("reconnected to a node whose history does not reach the offset: replayed from the stream", async () => {
  const s = io(`http://127.0.0.1:${pxA.port}/r`, { forceNew: true, transports: ["websocket"],
    reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 });
  const got = [];
  s.on("t", (p) => got.push(p));
  let c;
  try {
    await withTimeout(new Promise((r) => s.once("connect", r)), 5000, "connect");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "t" });
    await publish(a.port, [{ namespace: "/r", topic: "t", payload: "first" }]);
    await waitFor(() => got.length >= 1, 5000, "one delivery");
    const id = s.id, pid = s._pid;
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    // missed: 30 on node A, 30 on node B, interleaved by batches, in this order in the stream:
    // the API answers before Redis confirms the appends, so each batch is confirmed before
    // the next goes to the other node (or the other node's appends could land first)
    for (let i = 0; i < 60; i += 10) {
      const node = (i / 10) % 2 ? b : a;
      await publish(node.port, Array.from({ length: 10 }, (_, k) => ({ namespace: "/r", topic: "t", payload: i + k })));
      await waitMetric(node.port, "sluice_cluster_buffered", {}, (v) => v === 0, 10000);
    }
    await caughtUp(a); // all in the stream before node C starts
    await stored(pid);
    c = await startServer(cfg(redis.url)); // reads the stream from now on: none of them
    await waitMetric(c.port, "sluice_cluster_up", {}, (v) => v === 1, 10000);
    await moveTo(s, c.port); // the load balancer sends it there
    assert.equal(s.recovered, true);
    assert.equal(s.id, id);
    await waitFor(() => got.length >= 61, 5000, "61 deliveries");
    await publish(b.port, [{ namespace: "/r", topic: "t", payload: "live" }]);
    await waitFor(() => got.length >= 62, 5000, "the live delivery on node C");
    await sleep(200);
    assert.deepEqual(got, ["first", ...Array.from({ length: 60 }, (_, i) => i), "live"]);
    assert.equal(await metric(c.port, "sluice_recoveries_total", { namespace: "/r", result: "recovered" }), 1);
    assert.equal(await metric(c.port, "sluice_recovery_replayed_total", { namespace: "/r" }), 60);
  } finally {
    s.close();
    if (c) assertCleanExit(await c.stop());
  }
});

// The messages in flight on node A (sent, not acked) are in the session record (topic, stream
// id, messageId); node B fetches each from the stream and sends it again, same messageId.
test("AT_LEAST_ONCE, maxInFlight 4, cut from node A with messages in flight, recovered on node B: each acked once", async () => {
  const s = io(`http://127.0.0.1:${pxA.port}/alo`, { forceNew: true, transports: ["websocket"],
    reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 });
  const got = [];
  const okAcks = new Map();
  let acking = false;
  const deferred = [];
  const ack = (meta) => {
    s.timeout(10000).emitWithAck("ack", { topic: "t", messageId: meta.messageId }).then((r) => {
      if (r.ok) okAcks.set(meta.messageId, (okAcks.get(meta.messageId) || 0) + 1);
    }, () => {});
  };
  s.on("t", (payload, meta) => {
    got.push({ payload, id: meta.messageId });
    if (acking) ack(meta); else deferred.push(meta);
  });
  try {
    await withTimeout(new Promise((r) => s.once("connect", r)), 5000, "connect");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "t" });
    const pid = s._pid;
    const retries0 = await metric(b.port, "streamfence_retries_total", { namespace: "/alo" });
    const pub = async (node, from, to) => (await publish(node.port, Array.from({ length: to - from + 1 },
      (_, k) => ({ namespace: "/alo", topic: "t", payload: from + k }))));
    const ids1 = await pub(a, 1, 10);
    await waitFor(() => got.length >= 4, 5000, "the 4 messages of the window");
    await sleep(100);
    assert.equal(got.length, 4); // the window is full: 4 in flight on node A, 6 queued there
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    const ids2 = [...(await pub(a, 11, 15)), ...(await pub(b, 16, 20))];
    await caughtUp(b);
    await stored(pid);
    await moveTo(s, pxB.port); // the load balancer sends it there
    assert.equal(s.recovered, true);
    acking = true;
    for (const meta of deferred.splice(0)) ack(meta);
    const all = [...ids1, ...ids2];
    assert.equal(new Set(all).size, 20);
    await waitFor(() => all.every((id) => okAcks.has(id)), 10000,
      () => `an ok ack for each of the 20 messages (got ${JSON.stringify(got.map((g) => g.payload))}, acked ${JSON.stringify([...okAcks])})`);
    await sleep(200);
    for (const id of all) assert.equal(okAcks.get(id), 1, `message ${id} acked ${okAcks.get(id)} times`);
    assert.deepEqual([...new Set(got.map((g) => g.payload))].sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i + 1));
    // the 4 in flight were sent again by node B (same messageId), nothing else twice
    assert.equal(got.length, 24);
    for (const g of got) assert.equal(g.id, all[g.payload - 1]);
    assert.equal(await metric(b.port, "streamfence_retries_total", { namespace: "/alo" }) - retries0, 4);
    assert.equal(await metric(b.port, "sluice_recovery_resent_total", { namespace: "/alo" }), 4);
  } finally { s.close(); }
});

// An in-flight message whose stream entry is gone when node B takes the session cannot be
// sent again: it is counted lost (reason "trimmed"), the rest is recovered.
test("AT_LEAST_ONCE in flight on node A, its entries trimmed before node B recovers: counted lost", async () => {
  const s = io(`http://127.0.0.1:${pxA.port}/alo`, { forceNew: true, transports: ["websocket"],
    reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 });
  const got = [];
  const deferred = [];
  let acking = false;
  const ack = (meta) => s.timeout(10000).emitWithAck("ack", { topic: "t", messageId: meta.messageId }).catch(() => {});
  s.on("t", (payload, meta, offset) => {
    got.push({ payload, offset });
    if (acking) ack(meta); else deferred.push(meta);
  });
  try {
    await withTimeout(new Promise((r) => s.once("connect", r)), 5000, "connect");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "t" });
    const lost0 = await metric(b.port, "sluice_messages_lost_total", { namespace: "/alo", topic: "t", reason: "trimmed" }) || 0;
    const pid = s._pid;
    await publish(a.port, Array.from({ length: 6 }, (_, k) => ({ namespace: "/alo", topic: "t", payload: 101 + k })));
    await waitFor(() => got.length >= 4, 5000, "the 4 messages of the window");
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    // the first 3 in flight leave the stream; the 4th (the client's offset) stays
    redis.cli("XTRIM", "sluice-recovery", "MINID", got[3].offset);
    await stored(pid);
    await moveTo(s, pxB.port); // the load balancer sends it there
    assert.equal(s.recovered, true);
    acking = true;
    for (const meta of deferred.splice(0)) ack(meta);
    await waitFor(() => got.length >= 4 + 1 + 2, 5000, () => `message 104 again, then 105 and 106 (got ${JSON.stringify(got.map((g) => g.payload))})`);
    await sleep(200);
    assert.deepEqual(got.slice(4).map((g) => g.payload), [104, 105, 106]);
    assert.equal(await metric(b.port, "sluice_messages_lost_total", { namespace: "/alo", topic: "t", reason: "trimmed" }) - lost0, 3);
  } finally { s.close(); }
});

// Node A's expiry of a session it kept: it takes the record back (GETDEL). Gone: another node
// took it, so what A's lanes held was not lost (B delivers it): released, counted as a handoff.
const SHORT = "/short";
const lostOn = async (node) => (await metric(node.port, "sluice_messages_lost_total", { namespace: SHORT, topic: "t", reason: "disconnect" })) || 0;
const handoffsOn = async (node) => (await metric(node.port, "sluice_recovery_handoffs_total", { namespace: SHORT })) || 0;

// Connect to node A on /short, subscribe, get 2 in flight (not acked) and 3 queued, then cut.
async function parkOnA(tag) {
  const s = io(`http://127.0.0.1:${pxA.port}${SHORT}`, { forceNew: true, transports: ["websocket"],
    reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 });
  const got = [];
  s.on("t", (payload, meta) => got.push({ payload, meta }));
  await withTimeout(new Promise((r) => s.once("connect", r)), 5000, "connect");
  await s.timeout(5000).emitWithAck("subscribe", { topic: "t" });
  await publish(a.port, Array.from({ length: 5 }, (_, k) => ({ namespace: SHORT, topic: "t", payload: `${tag}${k}` })));
  await waitFor(() => got.length === 2, 5000, "the 2 messages of the window");
  await sleep(100);
  const pid = s._pid;
  const disc = new Promise((r) => s.once("disconnect", r));
  pxA.cut();
  await disc;
  await stored(pid);
  return { s, got, pid };
}

const reconnectToB = (s) => moveTo(s, pxB.port);

test("maxDisconnectionMs 1500: parked on node A, recovered on node B: node A releases it without counting a loss", async () => {
  const lostA0 = await lostOn(a), handA0 = await handoffsOn(a);
  const { s, got } = await parkOnA("h");
  try {
    await reconnectToB(s);
    assert.equal(s.recovered, true);
    for (const g of got.splice(0)) s.emit("ack", { topic: "t", messageId: g.meta.messageId });
    // past node A's maxDisconnectionMs: A takes the record back, finds it gone
    await waitFor(async () => (await handoffsOn(a)) > handA0, 10000, "node A's expiry of the session");
    assert.equal(await lostOn(a), lostA0, "node A counted the handed-off session's messages lost");
    assert.equal(await handoffsOn(a), handA0 + 1);
    assert.equal(await metric(a.port, "sluice_recovery_sessions", { namespace: SHORT }), 0);
    assert.equal(await lostOn(b), 0);
  } finally { s.close(); }
});

test("maxDisconnectionMs 1500: parked on node A, nobody recovers it: node A counts what it held lost", async () => {
  const lostA0 = await lostOn(a), handA0 = await handoffsOn(a);
  const { s, pid } = await parkOnA("n");
  s.close(); // never comes back
  pxA.release();
  // past node A's maxDisconnectionMs: A takes its record back and counts what it held lost
  await waitFor(async () => (await metric(a.port, "sluice_recovery_sessions", { namespace: SHORT })) === 0, 10000, "node A's expiry of the session");
  assert.equal(await lostOn(a), lostA0 + 5); // 2 in flight, 3 queued
  assert.equal(await handoffsOn(a), handA0);
  assert.equal(await metric(a.port, "sluice_recovery_sessions", { namespace: SHORT }), 0);
  assert.equal(redis.cli("EXISTS", `sio:session:${pid}`).trim(), "0"); // taken back by node A
});

// Node B judges expiry from the record (its "expires"), not from the key's PX (which outlives
// it): past it, a fresh session, counted expired, and node B counts the loss (node A, finding
// the record taken, releases it quietly): counted once.
test("the record past its expiry when node B takes it: a fresh session, the loss counted once, on node B", async () => {
  const lostA0 = await lostOn(a), lostB0 = await lostOn(b), handA0 = await handoffsOn(a);
  const exp0 = await metric(b.port, "sluice_recoveries_total", { namespace: SHORT, result: "expired" }) || 0;
  const { s, pid } = await parkOnA("e");
  try {
    const key = `sio:session:${pid}`;
    const rec = JSON.parse(redis.cli("GET", key));
    rec.expires = String(Date.now() - 1);
    redis.cli("SET", key, JSON.stringify(rec), "PX", "10000");
    await reconnectToB(s);
    assert.equal(s.recovered, false);
    assert.equal(await metric(b.port, "sluice_recoveries_total", { namespace: SHORT, result: "expired" }), exp0 + 1);
    assert.equal(await lostOn(b), lostB0 + 5);
    // past node A's maxDisconnectionMs: A finds the record taken and releases the session
    await waitFor(async () => (await handoffsOn(a)) > handA0, 10000, "node A's expiry of the session");
    assert.equal(await lostOn(a), lostA0);
    assert.equal(await handoffsOn(a), handA0 + 1);
  } finally { s.close(); }
});

// Last: it trims the stream. The client's offset entry is gone from Redis: the replay would
// be partial, so the client gets a fresh session, though node B's own history still covers it.
test("the offset's stream entry trimmed: a fresh session, nothing replayed", async () => {
  const s = io(`http://127.0.0.1:${pxA.port}/r`, { forceNew: true, transports: ["websocket"],
    reconnectionDelay: 50, reconnectionDelayMax: 100, randomizationFactor: 0 });
  const got = [];
  s.on("t", (p) => got.push(p));
  try {
    await withTimeout(new Promise((r) => s.once("connect", r)), 5000, "connect");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "t" });
    await publish(a.port, [{ namespace: "/r", topic: "t", payload: "first" }]);
    await waitFor(() => got.length >= 1, 5000, "one delivery");
    const id = s.id, pid = s._pid;
    const expired0 = await metric(b.port, "sluice_recoveries_total", { namespace: "/r", result: "expired" });
    const replayed0 = await metric(b.port, "sluice_recovery_replayed_total", { namespace: "/r" });
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    redis.cli("XTRIM", "sluice-recovery", "MAXLEN", "0");
    await publish(a.port, Array.from({ length: 5 }, (_, i) => ({ namespace: "/r", topic: "t", payload: i })));
    await caughtUp(b); // node B's own history covers the offset
    await stored(pid);
    await moveTo(s, pxB.port); // the load balancer sends it there
    assert.equal(s.recovered, false);
    assert.notEqual(s.id, id);
    await sleep(300);
    assert.deepEqual(got, ["first"]);
    assert.equal(await metric(b.port, "sluice_recoveries_total", { namespace: "/r", result: "expired" }), expired0 + 1);
    assert.equal(await metric(b.port, "sluice_recovery_replayed_total", { namespace: "/r" }), replayed0);
  } finally { s.close(); }
});
