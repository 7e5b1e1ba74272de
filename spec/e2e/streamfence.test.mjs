// streamfence.test.mjs - the StreamFenceJs client protocol (STREAMFENCE.md §2, DESIGN.md §3.5)
// with the real socket.io-client in every client mode: subscribe / unsubscribe, deliveries as
// an event named after the topic with exactly one argument (BEST_EFFORT), publishTo through
// POST /api/publish "to", client `publish` allowed and refused, Socket.IO ack ids on the
// protocol events, unknown topics and malformed payloads.
//
// "Not delivered" is asserted without sleeping: a lane is FIFO, so after the message that must
// not arrive (X) the test makes a message Y arrive on the same topic for the same client; had X
// been delivered, it would have come before Y.
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, client, connected, once, Inbox, closeAll, MODES, LUA_APP,
  api, publish,
} from "./helpers.mjs";

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      engineIoTransport = "WEBSOCKET_OR_POLLING",
      namespaces = {
        { path = "/feed", topics = { "prices", "news" }, deliveryMode = "BEST_EFFORT",
          overflowAction = "DROP_OLDEST", maxQueuedMessagesPerClient = 1000,
          maxQueuedBytesPerClient = 4194304, clientPublish = true, onEvent = app_event },
        { path = "/locked", topics = { "prices" }, deliveryMode = "BEST_EFFORT",
          clientPublish = false, onEvent = app_event },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

// barrier: events on one socket are handled in order, so once "ping" is acked every event
// emitted before it (subscribe, unsubscribe, publish) has been processed.
async function barrier(s) {
  assert.equal(await s.timeout(5000).emitWithAck("ping"), "pong");
}

async function subscribe(s, topic) {
  s.emit("subscribe", { topic, token: null });
  await barrier(s);
}

let seq = 0;
const mark = (tag) => ({ tag, seq: ++seq });

for (const [mode, opts] of Object.entries(MODES)) {
  describe(`StreamFence protocol (${mode})`, () => {
    const open = async (ns = "/feed", extra = {}) => connected(client(`${srv.url}${ns}`, { ...opts, ...extra }));

    it("subscribe -> deliveries on an event named after the topic, exactly 1 argument", async () => {
      const s = await open();
      try {
        const prices = new Inbox(s, "prices");
        await subscribe(s, "prices");
        const payloads = [{ symbol: "ACME", px: 12.5, n: mark("a").seq }, "plain string", 42, [1, "two", { three: 3 }],
          { unicode: "€ ✓ 日本", nested: { deep: [true, false] } }];
        for (const p of payloads) {
          const ids = await publish(srv.port, { namespace: "/feed", topic: "prices", payload: p });
          assert.equal(ids.length, 1);
          assert.equal(typeof ids[0], "string");
          assert.match(ids[0], /^msg-/);
        }
        for (const p of payloads) {
          const args = await prices.next();
          assert.equal(args.length, 1, `BEST_EFFORT delivers exactly one argument, got ${JSON.stringify(args)}`);
          assert.deepEqual(args[0], p);
        }
      } finally { closeAll(s); }
    });

    it("nothing published before subscribing is replayed; other topics are not delivered", async () => {
      const s = await open();
      try {
        const news = new Inbox(s, "news");
        await subscribe(s, "prices");
        const x = mark("x-before-subscribe");
        await publish(srv.port, { namespace: "/feed", topic: "news", payload: x });
        await subscribe(s, "news");
        const y = mark("y");
        await publish(srv.port, { namespace: "/feed", topic: "news", payload: y });
        assert.deepEqual(await news.next(), [y]);
      } finally { closeAll(s); }
    });

    it("unsubscribe stops deliveries; subscribing again resumes them", async () => {
      const s = await open();
      try {
        const prices = new Inbox(s, "prices");
        await subscribe(s, "prices");
        const a = mark("a");
        await publish(srv.port, { namespace: "/feed", topic: "prices", payload: a });
        assert.deepEqual(await prices.next(), [a]);
        s.emit("unsubscribe", { topic: "prices" });
        await barrier(s);
        await publish(srv.port, { namespace: "/feed", topic: "prices", payload: mark("x-after-unsubscribe") });
        await subscribe(s, "prices");
        const y = mark("y");
        await publish(srv.port, { namespace: "/feed", topic: "prices", payload: y });
        assert.deepEqual(await prices.next(), [y]);
      } finally { closeAll(s); }
    });

    it("subscribe is idempotent (one delivery per publish)", async () => {
      const s = await open();
      try {
        const prices = new Inbox(s, "prices");
        await subscribe(s, "prices");
        await subscribe(s, "prices");
        const x = mark("x"), y = mark("y");
        await publish(srv.port, [{ namespace: "/feed", topic: "prices", payload: x },
          { namespace: "/feed", topic: "prices", payload: y }]);
        assert.deepEqual(await prices.next(), [x]);
        assert.deepEqual(await prices.next(), [y]);
      } finally { closeAll(s); }
    });

    it("a batch of 200 published messages arrives complete and in order", async () => {
      const s = await open();
      try {
        const prices = new Inbox(s, "prices");
        await subscribe(s, "prices");
        const base = seq;
        const batch = Array.from({ length: 200 }, () => ({ namespace: "/feed", topic: "prices", payload: mark("b") }));
        const ids = await publish(srv.port, batch);
        assert.equal(ids.length, 200);
        assert.equal(new Set(ids).size, 200, "message ids are unique");
        const got = await prices.count(200, 10000);
        assert.deepEqual(got.map((a) => a[0].seq), Array.from({ length: 200 }, (_, i) => base + i + 1));
      } finally { closeAll(s); }
    });

    it('publishTo ("to" = socket.id) reaches only that client', async () => {
      const a = await open(), b = await open();
      try {
        const pa = new Inbox(a, "prices"), pb = new Inbox(b, "prices");
        await subscribe(a, "prices");
        await subscribe(b, "prices");
        const x = mark("only-a");
        const ids = await publish(srv.port, { namespace: "/feed", topic: "prices", payload: x, to: a.id });
        assert.equal(ids.length, 1);
        const y = mark("everyone");
        await publish(srv.port, { namespace: "/feed", topic: "prices", payload: y });
        assert.deepEqual(await pa.next(), [x]);
        assert.deepEqual(await pa.next(), [y]);
        assert.deepEqual(await pb.next(), [y], "b must not receive the message addressed to a");
      } finally { closeAll(a, b); }
    });

    it("client publish (clientPublish = true) reaches every subscriber, the sender included", async () => {
      const a = await open(), b = await open(), c = await open();
      try {
        const pa = new Inbox(a, "prices"), pb = new Inbox(b, "prices");
        await subscribe(a, "prices");
        await subscribe(b, "prices");
        const x = mark("from-a");
        a.emit("publish", { topic: "prices", payload: x });
        assert.deepEqual(await pa.next(), [x]);
        assert.deepEqual(await pb.next(), [x]);
        // a publisher does not need a subscription
        const y = mark("from-c");
        c.emit("publish", { topic: "prices", payload: y, token: null });
        assert.deepEqual(await pa.next(), [y]);
        assert.deepEqual(await pb.next(), [y]);
      } finally { closeAll(a, b, c); }
    });

    it('client publish refused (clientPublish = false): nothing delivered, error event {code:"PUBLISH_FORBIDDEN"}', async () => {
      const sub = await open("/locked"), pub = await open("/locked");
      try {
        const prices = new Inbox(sub, "prices");
        await subscribe(sub, "prices");
        const errP = once(pub, "error", 5000);
        pub.emit("publish", { topic: "prices", payload: mark("forbidden") });
        const [err] = await errP;
        assert.equal(err?.code, "PUBLISH_FORBIDDEN", `error event: ${JSON.stringify(err)}`);
        assert.equal(typeof err.message, "string");
        await barrier(pub);
        const y = mark("via-api");
        await publish(srv.port, { namespace: "/locked", topic: "prices", payload: y });
        assert.deepEqual(await prices.next(), [y]);
        assert.equal(pub.connected, true, "a refused publish does not disconnect");
      } finally { closeAll(sub, pub); }
    });

    it("Socket.IO ack ids on subscribe / unsubscribe / publish are answered {ok:true}", async () => {
      const s = await open();
      try {
        const prices = new Inbox(s, "prices");
        assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "prices" }), { ok: true });
        const x = mark("acked-publish");
        const pr = await s.timeout(5000).emitWithAck("publish", { topic: "prices", payload: x });
        assert.equal(pr?.ok, true, JSON.stringify(pr)); // extra fields (a messageId) are fine
        assert.deepEqual(await prices.next(), [x]);
        assert.deepEqual(await s.timeout(5000).emitWithAck("unsubscribe", { topic: "prices" }), { ok: true });
      } finally { closeAll(s); }
    });

    it('refusals are answered {ok:false, code, message}: UNKNOWN_TOPIC, PUBLISH_FORBIDDEN', async () => {
      const s = await open(), l = await open("/locked");
      try {
        const r1 = await s.timeout(5000).emitWithAck("subscribe", { topic: "no-such-topic" });
        assert.equal(r1?.ok, false, JSON.stringify(r1));
        assert.equal(r1.code, "UNKNOWN_TOPIC");
        assert.equal(typeof r1.message, "string");
        const r2 = await s.timeout(5000).emitWithAck("publish", { topic: "no-such-topic", payload: 1 });
        assert.equal(r2?.ok, false, JSON.stringify(r2));
        assert.equal(r2.code, "UNKNOWN_TOPIC");
        const r3 = await l.timeout(5000).emitWithAck("publish", { topic: "prices", payload: 1 });
        assert.equal(r3?.ok, false, JSON.stringify(r3));
        assert.equal(r3.code, "PUBLISH_FORBIDDEN");
        assert.equal(typeof r3.message, "string");
        // a topic of another namespace is unknown here
        const r4 = await l.timeout(5000).emitWithAck("subscribe", { topic: "news" });
        assert.equal(r4?.ok, false, JSON.stringify(r4));
        assert.equal(r4.code, "UNKNOWN_TOPIC");
      } finally { closeAll(s, l); }
    });

    it("unknown-topic subscribe (no ack id) does not subscribe to anything or disconnect", async () => {
      const s = await open();
      try {
        s.emit("subscribe", { topic: "no-such-topic" });
        s.emit("subscribe", { topic: "Prices" }); // topic names are case-sensitive
        await barrier(s);
        assert.equal(s.connected, true);
      } finally { closeAll(s); }
    });

    it("malformed payloads (null, string, number, {topic:5}, ...) are ignored without harm", async () => {
      const s = await open();
      try {
        const prices = new Inbox(s, "prices");
        for (const bad of [null, "prices", 5, { topic: 5 }, {}, [], ["prices"], { topic: "" }, { topic: "   " }, true]) {
          s.emit("subscribe", bad);
          s.emit("unsubscribe", bad);
          s.emit("publish", bad);
          s.emit("ack", bad);
        }
        s.emit("subscribe");
        s.emit("publish", { topic: 7, payload: "x" });
        s.emit("ack", { topic: "prices", messageId: 12 });
        await barrier(s);
        assert.equal(s.connected, true);
        // none of them subscribed the socket: X is not delivered, Y (after a real subscribe) is
        await publish(srv.port, { namespace: "/feed", topic: "prices", payload: mark("x") });
        await subscribe(s, "prices");
        const y = mark("y");
        await publish(srv.port, { namespace: "/feed", topic: "prices", payload: y });
        assert.deepEqual(await prices.next(), [y]);
      } finally { closeAll(s); }
    });

    it("malformed payloads with an ack id are answered {ok:false, code:\"INVALID_PAYLOAD\"}", async () => {
      const s = await open();
      try {
        for (const bad of [null, "prices", 5, { topic: 5 }]) {
          const r = await s.timeout(5000).emitWithAck("subscribe", bad);
          assert.equal(r?.ok, false, `subscribe ${JSON.stringify(bad)} -> ${JSON.stringify(r)}`);
          assert.equal(r.code, "INVALID_PAYLOAD", `subscribe ${JSON.stringify(bad)} -> ${JSON.stringify(r)}`);
        }
        assert.equal(s.connected, true);
      } finally { closeAll(s); }
    });
  });
}

test("fan-out: one publish reaches 20 subscribers of mixed transports, once each", async () => {
  const socks = [];
  try {
    for (let i = 0; i < 20; i++) socks.push(client(`${srv.url}/feed`, i % 2 ? MODES.websocket : {}));
    await Promise.all(socks.map((s) => connected(s)));
    const boxes = socks.map((s) => new Inbox(s, "news"));
    await Promise.all(socks.map((s) => subscribe(s, "news")));
    const x = mark("fan"), y = mark("fan2");
    await publish(srv.port, { namespace: "/feed", topic: "news", payload: x });
    await publish(srv.port, { namespace: "/feed", topic: "news", payload: y });
    for (const b of boxes) {
      assert.deepEqual(await b.next(), [x]);
      assert.deepEqual(await b.next(), [y]);
    }
  } finally { closeAll(...socks); }
});

test("a disconnected subscriber is forgotten: publishing to it later is harmless", async () => {
  const s = await connected(client(`${srv.url}/feed`, MODES.websocket));
  await subscribe(s, "prices");
  const id = s.id;
  const gone = once(s, "disconnect");
  s.disconnect();
  await gone;
  const r = await api(srv.port, { namespace: "/feed", topic: "prices", payload: 1, to: id });
  assert.equal(r.status, 200, r.text);
  await publish(srv.port, { namespace: "/feed", topic: "prices", payload: 2 });
  const t = await connected(client(`${srv.url}/feed`, MODES.websocket));
  try { await barrier(t); } finally { closeAll(t); }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
