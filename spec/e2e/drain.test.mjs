// drain.test.mjs - graceful drain (issue 16, item 5): on SIGTERM or POST /api/drain the node
// refuses new connections (503) and /readyz answers 503 while open sessions keep working;
// it waits for AT_LEAST_ONCE in-flight messages to be acked and lanes to empty (at most
// drainTimeoutMs), then closes each transport as socket.io's io.close() does, so that
// socket.io-client sees "transport close" (not "io server disconnect") and reconnects by
// itself - here to a new node on the same address; the process exits 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { io } from "socket.io-client";
import {
  startServer, assertCleanExit, client, connected, Inbox, publish, closeAll, sleep, withTimeout, once,
  MODES, connectError,
} from "./helpers.mjs";

const cfg = ({ port = 0, drainTimeoutMs } = {}) => `
return { servers = { main = {
  host = "127.0.0.1", port = ${port},
  ${drainTimeoutMs === undefined ? "" : `drainTimeoutMs = ${drainTimeoutMs},`}
  namespaces = {
    { path = "/alo", topics = { "orders" }, deliveryMode = "AT_LEAST_ONCE", overflowAction = "REJECT_NEW",
      maxQueuedMessagesPerClient = 64, maxInFlight = 4, ackTimeoutMs = 30000, maxRetries = 1 },
    { path = "/feed", topics = { "prices" } },
  },
} } }
`;

const probe = async (port, p) => {
  const r = await fetch(`http://127.0.0.1:${port}${p}`, { signal: AbortSignal.timeout(3000) });
  return { status: r.status, body: await r.json() };
};

// waitExit: resolves {code, signal, ms} when the server process exits by itself.
function waitExit(srv, t0, ms = 15000) {
  return withTimeout(new Promise((resolve) => {
    if (!srv.alive()) return resolve({ code: srv.proc.exitCode, signal: srv.proc.signalCode, ms: 0 });
    srv.proc.once("close", (code, signal) => resolve({ code, signal, ms: performance.now() - t0 }));
  }), ms, "the server to exit after draining");
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

test("/readyz answers 200 while serving (and /healthz stays liveness)", async () => {
  const srv = await startServer(cfg());
  try {
    assert.deepEqual(await probe(srv.port, "/readyz"), { status: 200, body: { status: "ready" } });
    assert.equal((await probe(srv.port, "/healthz")).status, 200);
  } finally {
    assertCleanExit(await srv.stop());
  }
});

test("SIGTERM: not ready, new connections refused, in-flight AT_LEAST_ONCE acked, then transport close and exit 0", async () => {
  const srv = await startServer(cfg());
  const s = await connected(client(`${srv.url}/alo`, MODES.websocket));
  const p = await connected(client(`${srv.url}/feed`, MODES["polling-only"]));
  try {
    const orders = new Inbox(s, "orders");
    assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "orders" }), { ok: true });
    const prices = new Inbox(p, "prices");
    await p.timeout(5000).emitWithAck("subscribe", { topic: "prices" });
    const [id] = await publish(srv.port, [{ namespace: "/alo", topic: "orders", payload: { n: 1 } }]);
    const [, meta] = await orders.next();
    assert.equal(meta.messageId, id);
    const reasons = [once(s, "disconnect", 15000), once(p, "disconnect", 15000)];
    const t0 = performance.now();
    srv.proc.kill("SIGTERM");
    const exited = waitExit(srv, t0);
    await srv.waitLog(/draining/);
    // not ready, alive, and no new connection; the sessions already open keep working
    assert.equal((await probe(srv.port, "/readyz")).status, 503);
    assert.equal((await probe(srv.port, "/healthz")).status, 200);
    const refused = client(`${srv.url}/feed`, MODES.websocket);
    await connectError(refused);
    refused.close();
    const hs = await fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`, { signal: AbortSignal.timeout(3000) });
    assert.equal(hs.status, 503);
    assert.equal((await hs.json()).error.code, "DRAINING");
    await publish(srv.port, [{ namespace: "/feed", topic: "prices", payload: { px: 1 } }]);
    assert.deepEqual((await prices.next())[0], { px: 1 }, "an open polling session still receives");
    await sleep(400);
    assert.ok(srv.alive(), "still draining: the AT_LEAST_ONCE message is in flight");
    assert.deepEqual(await s.timeout(5000).emitWithAck("ack", { topic: "orders", messageId: id }), { ok: true });
    const r = await exited;
    assert.equal(r.code, 0, `exit status ${r.code} ${r.signal}`);
    assert.ok(r.ms >= 400 && r.ms < 5000, `exited ${r.ms.toFixed(0)} ms after SIGTERM`);
    const why = (await Promise.all(reasons)).map((a) => a[0]);
    assert.deepEqual(why, ["transport close", "transport close"], "io.close(): the clients will reconnect");
    assert.match(srv.stderr(), /lanes empty/);
    assert.equal(orders.items.length, 1, "delivered once, no retry");
  } finally {
    closeAll(s, p);
    await srv.stop();
  }
});

test("drainTimeoutMs bounds the wait for a message that is never acked", async () => {
  const srv = await startServer(cfg({ drainTimeoutMs: 300 }));
  const s = await connected(client(`${srv.url}/alo`, MODES.websocket));
  try {
    const orders = new Inbox(s, "orders");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "orders" });
    await publish(srv.port, [{ namespace: "/alo", topic: "orders", payload: { n: 1 } }]);
    await orders.next();
    const t0 = performance.now();
    srv.proc.kill("SIGTERM");
    const r = await waitExit(srv, t0, 5000);
    assert.equal(r.code, 0);
    assert.ok(r.ms >= 250 && r.ms < 2500, `exited ${r.ms.toFixed(0)} ms after SIGTERM (drainTimeoutMs 300)`);
    assert.match(srv.stderr(), /drainTimeoutMs passed/);
  } finally {
    closeAll(s);
    await srv.stop();
  }
});

test("POST /api/drain drains like SIGTERM; a reconnecting socket.io-client lands on the next node by itself", async () => {
  const port = await freePort();
  const a = await startServer(cfg({ port }));
  // the default client: reconnection on, polling first then websocket
  const s = io(`http://127.0.0.1:${port}/feed`, { forceNew: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
  let b;
  try {
    await connected(s);
    await s.timeout(5000).emitWithAck("subscribe", { topic: "prices" });
    const why = once(s, "disconnect", 10000);
    const r = await fetch(`http://127.0.0.1:${port}/api/drain`, {
      method: "POST", headers: { "content-type": "application/json" }, body: "{}", signal: AbortSignal.timeout(3000),
    });
    assert.equal(r.status, 202);
    assert.deepEqual(await r.json(), { draining: true });
    const exit = await waitExit(a, performance.now());
    assert.equal(exit.code, 0);
    assert.equal((await why)[0], "transport close");
    b = await startServer(cfg({ port }));
    const back = once(s, "connect", 10000);
    await back;
    assert.ok(s.connected, "reconnected to the new node");
    const prices = new Inbox(s, "prices");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "prices" });
    await publish(port, [{ namespace: "/feed", topic: "prices", payload: { px: 2 } }]);
    assert.deepEqual((await prices.next())[0], { px: 2 });
  } finally {
    s.close();
    await a.stop();
    if (b) assertCleanExit(await b.stop());
  }
});

test("with the API on a listener of its own: POST /api/drain there, /readyz answers 503 on both ports", async () => {
  const srv = await startServer(cfg({ drainTimeoutMs: 1500 }).replace('host = "127.0.0.1", port = 0,',
    'host = "127.0.0.1", port = 0, api = { host = "127.0.0.1", port = 0 },'));
  await srv.waitLog(/API, \/metrics and status page on http/);
  const apiPort = Number(/API, \/metrics and status page on http:\/\/127\.0\.0\.1:(\d+)\//.exec(srv.stderr())[1]);
  const s = await connected(client(`${srv.url}/alo`, MODES.websocket));
  try {
    const orders = new Inbox(s, "orders");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "orders" });
    const [id] = await publish(apiPort, [{ namespace: "/alo", topic: "orders", payload: { n: 1 } }]);
    await orders.next();
    assert.equal((await probe(srv.port, "/readyz")).status, 200);
    const r = await fetch(`http://127.0.0.1:${apiPort}/api/drain`, {
      method: "POST", headers: { "content-type": "application/json" }, body: "{}", signal: AbortSignal.timeout(3000),
    });
    assert.equal(r.status, 202);
    const exited = waitExit(srv, performance.now());
    assert.equal((await probe(srv.port, "/readyz")).status, 503, "client port");
    assert.equal((await probe(apiPort, "/readyz")).status, 503, "API port");
    await s.timeout(5000).emitWithAck("ack", { topic: "orders", messageId: id });
    assert.equal((await exited).code, 0);
  } finally {
    closeAll(s);
    await srv.stop();
  }
});
