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
const NS = [{ path: "/r", topics: ["t"], maxQueuedMessagesPerClient: 1000, recovery: { maxDisconnectionMs: 10000 } }];
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
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
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
    await waitFor(() => got.length === 3, 5000, "3 deliveries");
    for (const g of got) assert.match(g.at(-1), /^\d+-\d+$/); // a Redis stream entry id
    const id = s.id;
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    for (let i = 4; i <= 53; i += 10) {
      await publish(b.port, Array.from({ length: 10 }, (_, k) => ({ namespace: "/r", topic: "t", payload: i + k })));
    }
    // wait until node A read them from the stream (they are in its history)
    await sleep(500);
    const back = new Promise((r) => s.once("connect", r));
    pxA.release();
    await withTimeout(back, 5000, "reconnect");
    assert.equal(s.recovered, true);
    assert.equal(s.id, id);
    await waitFor(() => got.length === 53, 5000, "53 deliveries");
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
    await waitFor(() => got.length === 1, 5000, "one delivery");
    const id = s.id, pid = s._pid;
    const disc = new Promise((r) => s.once("disconnect", r));
    pxA.cut();
    await disc;
    assert.equal(await metric(a.port, "sluice_recovery_sessions", { namespace: "/r" }), 1);
    // kept in Redis as the adapter does, with an expiry of maxDisconnectionMs
    await waitFor(() => redis.cli("EXISTS", `sio:session:${pid}`).trim() === "1", 5000, "the session in Redis");
    const ttl = Number(redis.cli("PTTL", `sio:session:${pid}`).trim());
    assert.ok(ttl > 0 && ttl <= 10000, `PTTL ${ttl}`);
    await publish(a.port, Array.from({ length: 20 }, (_, i) => ({ namespace: "/r", topic: "t", payload: i })));
    await sleep(500); // node B read them from the stream
    s.io.uri = `http://127.0.0.1:${pxB.port}`; // the load balancer sends it to node B
    s.io.opts.port = String(pxB.port);
    const back = new Promise((r) => s.once("connect", r));
    pxA.release();
    await withTimeout(back, 5000, "reconnect");
    assert.equal(s.recovered, true);
    assert.equal(s.id, id);
    await waitFor(() => got.length === 21, 5000, "21 deliveries");
    await publish(a.port, [{ namespace: "/r", topic: "t", payload: "live" }]);
    await waitFor(() => got.length === 22, 5000, "the live delivery on node B");
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

