// cluster-interop.test.mjs - Sluice nodes in one cluster with the socket.io ecosystem's own
// Redis tools (issue 14), against a real redis-server (spec/e2e/redis.mjs):
//  a. a socket.io 4 server with @socket.io/redis-streams-adapter 0.3.1 on the same stream as
//     two Sluice nodes: its io.of("/feed").emit("prices", x) reaches Sluice's subscribers, and
//     a Sluice publish reaches the socket.io server's sockets;
//  b. entries appended exactly as @socket.io/redis-streams-emitter 0.1.1 appends them (uid
//     "emitter"; not on the npm registry here, so written with the `redis` client following
//     its source: XADD <stream> MAXLEN ~ 10000 * uid emitter nsp <nsp> type 3 data
//     {"packet":{"type":2,"data":[ev,...args],"nsp":<nsp>},"opts":{"rooms":[],"flags":{},
//     "except":[]}}) reach Sluice's subscribers;
//  c. the classic @socket.io/redis-emitter (pub/sub, msgpack) with cluster.acceptEmitter: an
//     emit reaches every node's subscribers exactly once, .to(<client id>) only that client;
//     a node without acceptEmitter delivers nothing; what is not the emitter's is counted.
// In Sluice a topic is the event name: clients subscribe to "prices" and receive "prices"
// events with one argument. "Exactly once" is checked with markers sent after the message on
// the same path: a duplicate would arrive before the marker.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { createRequire } from "node:module";
import { startServer, assertCleanExit, client, connected, Inbox, closeAll, withTimeout, sleep } from "./helpers.mjs";
import { startRedis } from "./redis.mjs";

const require = createRequire(import.meta.url);
const { createClient } = require("redis");
const { Server } = require("socket.io");
const { createAdapter } = require("@socket.io/redis-streams-adapter");
const { Emitter } = require("@socket.io/redis-emitter");

const config = (redisUrl, { acceptEmitter = true, emitterKey } = {}) => `
return { servers = { main = {
  host = "127.0.0.1", port = 0,
  cluster = { redis = "${redisUrl}", acceptEmitter = ${acceptEmitter}${emitterKey ? `, emitterKey = "${emitterKey}"` : ""} },
  namespaces = {
    { path = "/feed", topics = { "prices", "news" }, deliveryMode = "BEST_EFFORT",
      overflowAction = "DROP_OLDEST", maxQueuedMessagesPerClient = 1000 },
    { path = "/orders", topics = { "order" }, deliveryMode = "AT_LEAST_ONCE", maxRetries = 3,
      ackTimeoutMs = 2000 },
  },
} } }
`;

let redis, nodeA, nodeB, nodeC, pub;
const socks = [];

// until: poll an async predicate (a readiness condition outside our control: a subscription
// or a blocking XREAD another process makes) every 25 ms for up to ms.
async function until(pred, ms, what) {
  return withTimeout((async () => {
    for (;;) {
      if (await pred()) return;
      await sleep(25);
    }
  })(), ms, what);
}
const xreaders = () => (redis.cli("CLIENT", "LIST").match(/cmd=xread/g) || []).length;
// connections with a pattern subscription (PUBSUB NUMPAT counts distinct patterns, and every
// node subscribes the same one)
const numpat = () => (redis.cli("CLIENT", "LIST").match(/ psub=[1-9]/g) || []).length;

async function subscriber(node, topic = "prices", ns = "/feed") {
  const s = await connected(client(`${node.url}${ns}`, { transports: ["websocket"] }));
  socks.push(s);
  const inbox = new Inbox(s, topic);
  const ack = await s.timeout(5000).emitWithAck("subscribe", { topic });
  assert.ok(ack, `subscribe ack: ${JSON.stringify(ack)}`);
  return { s, inbox };
}

async function metrics(node) {
  const r = await fetch(`${node.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  return r.text();
}
const metric = (text, name) => {
  const m = new RegExp(`^${name.replace(/[{}"=]/g, (c) => `\\${c}`)} (\\d+)`, "m").exec(text);
  return m ? Number(m[1]) : undefined;
};

before(async () => {
  redis = await startRedis();
  nodeA = await startServer(config(redis.url));
  nodeB = await startServer(config(redis.url));
  nodeC = await startServer(config(redis.url, { acceptEmitter: false }));
  pub = createClient({ url: redis.url });
  pub.on("error", () => {});
  await pub.connect();
  await until(() => numpat() >= 2, 10000, "the emitter pattern subscriptions of nodes A and B");
});

after(async () => {
  closeAll(...socks);
  await pub?.quit().catch(() => {});
  for (const n of [nodeA, nodeB, nodeC]) if (n) assertCleanExit(await n.stop());
  await redis?.stop();
});

describe("@socket.io/redis-emitter (pub/sub, msgpack) with acceptEmitter", () => {
  it("an emit reaches the subscribers of every accepting node exactly once, none elsewhere", async () => {
    const a = await subscriber(nodeA), b = await subscriber(nodeB), c = await subscriber(nodeC);
    const e = new Emitter(pub).of("/feed");
    const before = await metrics(nodeA);
    const x = { symbol: "ACME", price: 12.5, tags: ["a"], when: new Date(Date.UTC(2026, 0, 2)) };
    e.emit("prices", x);
    e.emit("prices", { marker: 1 });
    for (const n of [a, b]) {
      const got = await n.inbox.until((args) => args[0]?.marker === 1, 5000);
      assert.equal(got.length, 1);
      assert.deepEqual(n.inbox.items.map((i) => i[0]),
        [{ symbol: "ACME", price: 12.5, tags: ["a"], when: "2026-01-02T00:00:00.000Z" }, { marker: 1 }],
        "each message exactly once, in order");
    }
    // node C does not accept the emitter: a local publish on C is the first thing its client sees
    await fetch(`${nodeC.url}/api/publish`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ namespace: "/feed", topic: "prices", payload: { local: "C" } }),
    });
    const first = await c.inbox.until(() => true, 5000);
    assert.deepEqual(first, [{ local: "C" }]);
    assert.equal(metric(await metrics(nodeC), "sluice_emitter_received_total"), undefined,
      "a node without acceptEmitter has no emitter subscription");
    const afterA = await metrics(nodeA);
    assert.equal(metric(afterA, "sluice_emitter_received_total") - metric(before, "sluice_emitter_received_total"), 2);
    closeAll(a.s, b.s, c.s);
  });

  it(".to(<client id>) reaches only that client, on whichever node it is", async () => {
    const a1 = await subscriber(nodeA), a2 = await subscriber(nodeA), b1 = await subscriber(nodeB);
    const e = new Emitter(pub).of("/feed");
    e.to(b1.s.id).emit("prices", { to: "b1" });
    e.to(a2.s.id).emit("prices", { to: "a2" });
    e.emit("prices", { marker: 2 });
    for (const [n, want] of [[a1, []], [a2, [{ to: "a2" }]], [b1, [{ to: "b1" }]]]) {
      await n.inbox.until((args) => args[0]?.marker === 2, 5000);
      assert.deepEqual(n.inbox.items.map((i) => i[0]), [...want, { marker: 2 }]);
    }
    // except: everyone but a1
    e.except(a1.s.id).emit("prices", { not: "a1" });
    e.emit("prices", { marker: 3 });
    for (const [n, want] of [[a1, []], [a2, [{ not: "a1" }]], [b1, [{ not: "a1" }]]]) {
      await n.inbox.until((args) => args[0]?.marker === 3, 5000);
      assert.deepEqual(n.inbox.items.slice(-want.length - 1).map((i) => i[0]), [...want, { marker: 3 }]);
    }
    closeAll(a1.s, a2.s, b1.s);
  });

  it("an AT_LEAST_ONCE namespace gets a message id made on the receiving node, acks work", async () => {
    const a = await subscriber(nodeA, "order", "/orders");
    new Emitter(pub).of("/orders").emit("order", { id: 7 });
    const [payload, meta] = await a.inbox.next(5000);
    assert.deepEqual(payload, { id: 7 });
    assert.equal(meta.ackRequired, true);
    assert.equal(meta.topic, "order");
    assert.match(meta.messageId, /^msg-/);
    a.s.emit("ack", { topic: "order", messageId: meta.messageId });
    // one message in flight per client (maxInFlight 1): the next one is delivered only once the
    // ack was taken (else the first would be retried after ackTimeoutMs 2000 first)
    new Emitter(pub).of("/orders").emit("order", { id: 8 });
    const [p2] = await a.inbox.next(5000);
    assert.deepEqual(p2, { id: 8 });
    closeAll(a.s);
  });

  it("what cannot be delivered is counted by reason: binary, unknown topic, other publishers", async () => {
    const a = await subscriber(nodeA);
    const before = await metrics(nodeA);
    const e = new Emitter(pub).of("/feed");
    e.emit("prices", { raw: Buffer.from([1, 2, 3]) }); // binary: JSON cannot carry it
    e.emit("nosuchtopic", 1);
    e.emit("prices", 1, 2); // two arguments: Sluice delivers one payload
    await pub.publish("socket.io#/feed#", Buffer.from([0xc1])); // not msgpack
    e.emit("prices", { marker: 4 });
    await a.inbox.until((args) => args[0]?.marker === 4, 5000);
    assert.deepEqual(a.inbox.items.map((i) => i[0]), [{ marker: 4 }]);
    const m = await metrics(nodeA);
    const d = (r) => metric(m, `sluice_emitter_ignored_total{reason="${r}"}`) -
      metric(before, `sluice_emitter_ignored_total{reason="${r}"}`);
    assert.equal(d("binary"), 1);
    assert.equal(d("topic"), 1);
    assert.equal(d("args"), 1);
    assert.equal(d("malformed"), 1);
    await nodeA.waitLog(/emitter: message on socket\.io#\/feed# ignored \(binary\)/);
    closeAll(a.s);
  });
});

describe("emitterKey", () => {
  let nodeD;
  after(async () => { if (nodeD) assertCleanExit(await nodeD.stop()); });

  it("a node with emitterKey 'myapp' takes the emitter's messages on myapp#<nsp>#, not on socket.io#", async () => {
    nodeD = await startServer(config(redis.url, { emitterKey: "myapp" }));
    await until(() => redis.cli("PUBSUB", "CHANNELS", "myapp#*").includes("myapp#/feed#"), 10000,
      "node D's subscription to myapp#/feed#");
    await until(() => numpat() >= 3, 10000, "node D's pattern subscription");
    const d = await subscriber(nodeD);
    new Emitter(pub).of("/feed").emit("prices", { key: "socket.io" });
    const mine = new Emitter(pub, { key: "myapp" }).of("/feed");
    mine.emit("prices", { key: "myapp" });
    mine.to(d.s.id).emit("prices", { key: "myapp", to: "d" });
    await d.inbox.until((args) => args[0]?.to === "d", 5000);
    assert.deepEqual(d.inbox.items.map((i) => i[0]), [{ key: "myapp" }, { key: "myapp", to: "d" }]);
    closeAll(d.s);
  });
});

describe("@socket.io/redis-streams-emitter entries (uid emitter) on the stream", () => {
  before(() => until(() => xreaders() >= 3, 10000, "the stream readers of the three nodes"));
  // one entry exactly as the streams emitter 0.1.1 appends it (its flattenPayload + XADD)
  const xadd = (nsp, ev, args, { rooms = [], except = [] } = {}) =>
    pub.xAdd("socket.io", "*", {
      uid: "emitter",
      nsp,
      type: "3",
      data: JSON.stringify({ packet: { type: 2, data: [ev, ...args], nsp }, opts: { rooms, flags: {}, except } }),
    }, { TRIM: { strategy: "MAXLEN", strategyModifier: "~", threshold: 10000 } });

  it("reach the subscribers of every node, in stream order, and rooms name client ids", async () => {
    const a = await subscriber(nodeA), b = await subscriber(nodeB), c = await subscriber(nodeC);
    await xadd("/feed", "prices", [{ n: 1 }]);
    await xadd("/feed", "prices", [{ n: 2 }], { rooms: [b.s.id] });
    await xadd("/feed", "prices", [{ n: 3 }], { except: [c.s.id] });
    await xadd("/feed", "prices", [{ n: 4 }]);
    const want = { a: [1, 3, 4], b: [1, 2, 3, 4], c: [1, 4] };
    for (const [k, n] of Object.entries({ a, b, c })) {
      await n.inbox.until((args) => args[0]?.n === 4, 8000);
      assert.deepEqual(n.inbox.items.map((i) => i[0].n), want[k], `node ${k}`);
    }
    closeAll(a.s, b.s, c.s);
  });
});

describe("a socket.io 4 server with @socket.io/redis-streams-adapter in the same cluster", () => {
  let io, httpServer, sioUrl, adapterClient;
  before(async () => {
    adapterClient = createClient({ url: redis.url });
    adapterClient.on("error", () => {});
    await adapterClient.connect();
    httpServer = http.createServer();
    io = new Server(httpServer, { adapter: createAdapter(adapterClient), transports: ["websocket"] });
    io.of("/feed").on("connection", () => {});
    await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
    sioUrl = `http://127.0.0.1:${httpServer.address().port}`;
    await until(() => xreaders() >= 4, 10000, "the adapter's stream reader");
  });
  after(async () => {
    io?.close();
    await adapterClient?.quit().catch(() => {});
  });

  it("its io.of('/feed').emit('prices', x) reaches Sluice's subscribers on every node", async () => {
    const a = await subscriber(nodeA), b = await subscriber(nodeB);
    io.of("/feed").emit("prices", { from: "socket.io", px: 1.25 });
    io.of("/feed").emit("prices", { marker: 5 });
    for (const n of [a, b]) {
      await n.inbox.until((args) => args[0]?.marker === 5, 8000);
      assert.deepEqual(n.inbox.items.map((i) => i[0]), [{ from: "socket.io", px: 1.25 }, { marker: 5 }]);
    }
    closeAll(a.s, b.s);
  });

  it("a Sluice publish reaches the socket.io server's sockets", async () => {
    const s = await connected(client(`${sioUrl}/feed`, { transports: ["websocket"] }));
    socks.push(s);
    const inbox = new Inbox(s, "prices");
    const r = await fetch(`${nodeB.url}/api/publish`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ namespace: "/feed", topic: "prices", payload: { from: "sluice", px: 2 } }),
    });
    assert.equal(r.status, 200);
    const got = await inbox.next(8000);
    assert.deepEqual(got, [{ from: "sluice", px: 2 }]);
    closeAll(s);
  });
});
