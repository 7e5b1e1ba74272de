// flush-window.test.mjs - the batching window (flushIntervalMs, README "Batching window"):
// deliveries published in separate loop iterations reach a connection in one write when the
// window closes; AT_LEAST_ONCE deliveries, ack answers and control packets do not wait (they
// close the connection's window early); a namespace overrides the server's interval; a hot
// reload changes it without dropping a connection; bad values are refused in Lua, JSON and
// YAML alike.
import { it, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import {
  assertCleanExit, startServer, writeConfig, runSluice, publish, makePki, client, connected, MODES, sleep,
} from "./helpers.mjs";
import { serverConfig, metric, RawSio } from "./delivery-helpers.mjs";

const RELOAD_OPTS = () => ({ method: "POST", headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(10000) });
const WINDOW = 1000; // long, so that "waited for the window" and "did not" cannot be confused
const namespaces = (extra = {}) => [
  { path: "/batch", topics: ["t", "u"], ...extra },
  { path: "/now", topics: ["t"], flushIntervalMs: 0 },
  { path: "/short", topics: ["t"], flushIntervalMs: 150 },
  {
    path: "/alo", topics: ["t"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW",
    maxRetries: 1, ackTimeoutMs: 30000,
  },
];
const config = (ms) => serverConfig(namespaces(), { flushIntervalMs: ms, socketHighWaterBytes: 65536 });

let srv, file;
before(async () => {
  file = writeConfig(config(WINDOW));
  srv = await startServer(null, { file });
});
after(async () => { await srv?.stop(); });

async function sub(ns, topic = "t") {
  const c = await RawSio.connect(srv.port, ns);
  await c.subscribe(topic);
  return c;
}

// Publish n messages, each by its own API request (so each in its own loop iteration).
async function publishEach(ns, n, topic = "t") {
  for (let i = 0; i < n; i++) await publish(srv.port, { namespace: ns, topic, payload: { i } });
}

it("a window batches: deliveries published apart arrive together, in one TCP read, after the window", async () => {
  const c = await sub("/batch");
  try {
    const closed0 = await metric(srv.port, "sluice_flush_windows_total");
    const t0 = Date.now();
    await publishEach("/batch", 5);
    const sent = Date.now() - t0;
    await c.waitCount("t", 5, 5000);
    const ds = c.of("t");
    assert.deepEqual(ds.map((d) => d.payload.i), [0, 1, 2, 3, 4]);
    assert.equal(new Set(ds.map((d) => d.read)).size, 1, `one read for all (reads ${ds.map((d) => d.read)})`);
    if (sent < WINDOW / 2) assert.ok(ds[0].at - t0 >= WINDOW / 2, `the first waited for the window (${ds[0].at - t0} ms)`);
    assert.ok(await metric(srv.port, "sluice_flush_windows_total") > closed0);
  } finally { c.destroy(); }
});

it("a namespace overrides the server's interval: flushIntervalMs 0 writes at once, 150 waits at most about that", async () => {
  const a = await sub("/now");
  const b = await sub("/short");
  try {
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      await publish(srv.port, { namespace: "/now", topic: "t", payload: { i } });
      await a.waitCount("t", i + 1, WINDOW / 2);
      assert.ok(Date.now() - t0 < WINDOW / 2);
    }
    const t0 = Date.now();
    await publishEach("/short", 2);
    await b.waitCount("t", 2, WINDOW / 2);
    assert.ok(Date.now() - t0 < WINDOW / 2, `150 ms window took ${Date.now() - t0} ms`);
  } finally { a.destroy(); b.destroy(); }
});

it("AT_LEAST_ONCE deliveries do not wait for the server's window", async () => {
  const c = await sub("/alo");
  try {
    const t0 = Date.now();
    await publish(srv.port, { namespace: "/alo", topic: "t", payload: { n: 1 } });
    const d = await c.waitPayload("t", (p) => p.n === 1, WINDOW / 2);
    assert.ok(d.at - t0 < WINDOW / 2);
    assert.equal(d.meta.ackRequired, true);
  } finally { c.destroy(); }
});

it("an ack answer closes the window early: the waiting delivery goes out with it", async () => {
  const c = await sub("/batch");
  try {
    const t0 = Date.now();
    await publish(srv.port, { namespace: "/batch", topic: "t", payload: { w: 1 } });
    await c.subscribe("u"); // answered at once; the delivery waiting for the window goes too
    const acked = Date.now() - t0;
    assert.ok(acked < WINDOW / 2, `the ack answer took ${acked} ms`);
    const d = await c.waitPayload("t", (p) => p.w === 1, WINDOW / 2);
    assert.ok(d.at - t0 < WINDOW / 2, `the delivery took ${d.at - t0} ms`);
  } finally { c.destroy(); }
});

it("a hot reload changes the window without dropping the connection", async () => {
  const c = await sub("/batch");
  try {
    writeFileSync(file, config(0));
    const r = await fetch(`http://127.0.0.1:${srv.port}/api/reload`, RELOAD_OPTS());
    assert.equal(r.status, 200);
    for (let i = 0; i < 3; i++) {
      const t0 = Date.now();
      await publish(srv.port, { namespace: "/batch", topic: "t", payload: { r: i } });
      const d = await c.waitPayload("t", (p) => p.r === i, WINDOW / 2);
      assert.ok(d.at - t0 < WINDOW / 2);
    }
    writeFileSync(file, config(WINDOW));
    assert.equal((await fetch(`http://127.0.0.1:${srv.port}/api/reload`, RELOAD_OPTS())).status, 200);
    await publishEach("/batch", 3);
    await c.waitCount("t", 6, 5000);
    const last = c.of("t").slice(-3);
    assert.equal(new Set(last.map((d) => d.read)).size, 1, "batched again after the second reload");
    assert.equal(c.closed, false);
  } finally { c.destroy(); }
});

it("bad values are refused in Lua, JSON and YAML; an AT_LEAST_ONCE namespace's own value is warned about", async () => {
  const base = (server, ns) => ({ servers: { s: { port: 0, ...server, namespaces: [{ path: "/a", topics: ["t"], ...ns }] } } });
  const cases = [
    [{ flushIntervalMs: -1 }, {}],
    [{ flushIntervalMs: 1001 }, {}],
    [{ flushIntervalMs: "5" }, {}],
    [{}, { flushIntervalMs: -2 }],
    [{}, { flushIntervalMs: 5000 }],
  ];
  for (const [s, n] of cases) {
    const json = writeConfig(JSON.stringify(base(s, n)), "bad.json");
    const r = await runSluice(["check", json]);
    assert.notEqual(r.code, 0, `accepted ${JSON.stringify([s, n])}`);
    assert.match(r.stdout + r.stderr, /flushIntervalMs/);
  }
  const yaml = writeConfig("servers:\n  s:\n    port: 0\n    flushIntervalMs: 2\n    namespaces:\n      - path: /a\n        topics: [t]\n        flushIntervalMs: 5\n", "ok.yaml");
  const ry = await runSluice(["check", yaml]);
  assert.equal(ry.code, 0, ry.stdout + ry.stderr);
  const lua = writeConfig("return { servers = { s = { port = 0, flushIntervalMs = 1001, namespaces = { { path = '/a', topics = { 't' } } } } } }");
  const rl = await runSluice(["check", lua]);
  assert.notEqual(rl.code, 0);
  assert.match(rl.stdout + rl.stderr, /flushIntervalMs must be between 0 \(off\) and 1000/);
  const alo = writeConfig(JSON.stringify(base({}, {
    deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW", maxRetries: 1, flushIntervalMs: 5,
  })), "alo.json");
  const ra = await runSluice(["check", alo]);
  assert.equal(ra.code, 3, ra.stdout + ra.stderr);
  assert.match(ra.stdout + ra.stderr, /flushIntervalMs has no effect in an AT_LEAST_ONCE namespace/);
});

it("over TLS (WSS) the window batches the same way: deliveries published apart arrive together", async () => {
  const pki = makePki();
  const cert = pki.issue();
  const tlsSrv = await startServer(serverConfig([{ path: "/batch", topics: ["t"], clientPublish: true }], {
    transport: "WSS", tls: { certChainPemPath: cert.cert, privateKeyPemPath: cert.key }, flushIntervalMs: WINDOW,
  }));
  const opts = { ...MODES.websocket, ca: pki.caPem };
  const pub = await connected(client(`wss://127.0.0.1:${tlsSrv.port}/batch`, opts));
  const subr = await connected(client(`wss://127.0.0.1:${tlsSrv.port}/batch`, opts));
  try {
    const got = [];
    subr.on("t", (p) => got.push({ p, at: Date.now() }));
    assert.deepEqual(await subr.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) {
      const r = await pub.timeout(5000).emitWithAck("publish", { topic: "t", payload: { i } });
      assert.equal(r.ok, true, JSON.stringify(r));
      await sleep(80);
    }
    const sent = Date.now() - t0;
    for (let k = 0; k < 100 && got.length < 3; k++) await sleep(50);
    assert.deepEqual(got.map((g) => g.p.i), [0, 1, 2]);
    const spread = got[2].at - got[0].at;
    assert.ok(spread < 150, `published over ${sent} ms, arrived over ${spread} ms`);
    if (sent < WINDOW / 2) assert.ok(got[0].at - t0 >= WINDOW / 2, `the first waited for the window (${got[0].at - t0} ms)`);
  } finally {
    pub.close();
    subr.close();
    assertCleanExit(await tlsSrv.stop());
  }
});

it("stops cleanly", async () => {
  assertCleanExit(await srv.stop());
});
