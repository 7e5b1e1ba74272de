// hooks-events.test.mjs - the server event hooks (issue 4: "the StreamFenceJs listener events,
// all actually fired"): onConnect, onDisconnect, onSubscribe, onUnsubscribe, onOverflow and
// onRetryExhausted, with real socket.io-client v4 clients over websocket and polling+upgrade.
// Each hook re-publishes the event table it got (plus the hook's name) on the topic "audit" of
// a /ctl namespace, which the test watches, so every assertion awaits a real event and checks
// the documented fields (namespace, clientId, topic, reason, messageId, retryCount, transport).
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, client, connected, Inbox, closeAll, MODES, publish, once,
} from "./helpers.mjs";

const CONFIG = `
local function rec(kind)
  return function(ev)
    if ev.namespace == "/ctl" then return end
    ev.hook = kind
    sluice.publish("/ctl", "audit", ev)
  end
end
local function app_event(client, event, args, ack)
  if event == "ping" then
    if ack then ack("pong") end
  elseif event == "kick" then
    client:disconnect()
  end
end
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      onConnect = rec("onConnect"),
      onDisconnect = rec("onDisconnect"),
      onSubscribe = rec("onSubscribe"),
      onUnsubscribe = rec("onUnsubscribe"),
      onOverflow = rec("onOverflow"),
      onRetryExhausted = rec("onRetryExhausted"),
      namespaces = {
        { path = "/ctl", topics = { "audit" }, deliveryMode = "BEST_EFFORT",
          maxQueuedMessagesPerClient = 100000, maxQueuedBytesPerClient = 67108864 },
        { path = "/app", topics = { "t", "u" }, deliveryMode = "BEST_EFFORT", onEvent = app_event },
        { path = "/tiny", topics = { "t" }, deliveryMode = "BEST_EFFORT", overflowAction = "REJECT_NEW",
          maxQueuedMessagesPerClient = 2, maxQueuedBytesPerClient = 64, onEvent = app_event },
        { path = "/alo", topics = { "t" }, deliveryMode = "AT_LEAST_ONCE", overflowAction = "REJECT_NEW",
          ackTimeoutMs = 100, maxRetries = 2, maxInFlight = 1, onEvent = app_event },
      },
    },
  },
}
`;

let srv, ctl, audit;
before(async () => {
  srv = await startServer(CONFIG);
  ctl = await connected(client(`${srv.url}/ctl`, MODES.websocket));
  audit = new Inbox(ctl, "audit");
  assert.deepEqual(await ctl.timeout(5000).emitWithAck("subscribe", { topic: "audit" }), { ok: true });
});
after(async () => { closeAll(ctl); await srv?.stop(); });

// event: the next audit event of hook `hook` about client `id` (other clients' events skipped).
const event = (hook, id, extra = () => true, ms = 5000) =>
  audit.until(([e]) => e.hook === hook && e.clientId === id && extra(e), ms).then(([e]) => e);

for (const mode of ["websocket", "polling+upgrade"]) {
  describe(`server event hooks (${mode})`, () => {
    const open = async (ns = "/app") => connected(client(`${srv.url}${ns}`, MODES[mode]));

    it("onConnect and onSubscribe / onUnsubscribe carry namespace, clientId, topic", async () => {
      audit.pos = audit.items.length;
      const s = await open();
      try {
        const c = await event("onConnect", s.id);
        assert.equal(c.type, "connect");
        assert.equal(c.namespace, "/app");
        assert.equal(c.server, "main");
        assert.match(c.remoteAddress, /127\.0\.0\.1/);
        assert.ok(["websocket", "polling"].includes(c.transport), `transport ${c.transport}`);
        assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
        const sub = await event("onSubscribe", s.id);
        assert.equal(sub.type, "subscribe");
        assert.equal(sub.namespace, "/app");
        assert.equal(sub.topic, "t");
        assert.deepEqual(await s.timeout(5000).emitWithAck("unsubscribe", { topic: "t" }), { ok: true });
        const un = await event("onUnsubscribe", s.id);
        assert.equal(un.type, "unsubscribe");
        assert.equal(un.namespace, "/app");
        assert.equal(un.topic, "t");
        // a refused subscribe (unknown topic) fires nothing: the next subscribe event is for "u"
        const r = await s.timeout(5000).emitWithAck("subscribe", { topic: "nope" });
        assert.equal(r.code, "UNKNOWN_TOPIC");
        await s.timeout(5000).emitWithAck("subscribe", { topic: "u" });
        assert.equal((await event("onSubscribe", s.id)).topic, "u");
      } finally { closeAll(s); }
    });

    it("onDisconnect: client namespace disconnect, server kick, transport close (with reason)", async () => {
      const a = await open(), b = await open(), c = await open();
      const ids = [a.id, b.id, c.id];
      try {
        a.disconnect();
        const da = await event("onDisconnect", ids[0]);
        assert.equal(da.type, "disconnect");
        assert.equal(da.namespace, "/app");
        assert.equal(da.reason, "client namespace disconnect");
        const gone = once(b, "disconnect");
        b.emit("kick");
        const db = await event("onDisconnect", ids[1]);
        assert.equal(db.reason, "io server disconnect");
        assert.equal((await gone)[0], "io server disconnect");
        c.io.engine.close();
        const dc = await event("onDisconnect", ids[2]);
        assert.equal(dc.reason, "transport close");
      } finally { closeAll(a, b, c); }
    });

    it("onOverflow: a message larger than the lane's byte cap, and a full REJECT_NEW lane", async () => {
      const s = await open("/tiny");
      try {
        assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
        await publish(srv.port, { namespace: "/tiny", topic: "t", payload: { big: "x".repeat(200) } });
        const o = await event("onOverflow", s.id);
        assert.equal(o.type, "overflow");
        assert.equal(o.namespace, "/tiny");
        assert.equal(o.topic, "t");
        assert.equal(o.reason, "message exceeds maxQueuedBytesPerClient");
        // a burst in one request fills the 2-message lane before anything is written
        const burst = Array.from({ length: 6 }, (_, i) => ({ namespace: "/tiny", topic: "t", payload: i }));
        await publish(srv.port, burst);
        const o2 = await event("onOverflow", s.id, (e) => e.reason === "queue full with REJECT_NEW");
        assert.equal(o2.topic, "t");
      } finally { closeAll(s); }
    });

    it("onRetryExhausted: messageId and retryCount of an AT_LEAST_ONCE message never acked", async () => {
      const s = await open("/alo");
      try {
        const box = new Inbox(s, "t");
        assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
        const [id] = await publish(srv.port, { namespace: "/alo", topic: "t", payload: { n: 1 } });
        const e = await event("onRetryExhausted", s.id);
        assert.equal(e.type, "retryExhausted");
        assert.equal(e.namespace, "/alo");
        assert.equal(e.topic, "t");
        assert.equal(e.messageId, id);
        assert.equal(e.retryCount, 2);
        assert.equal(box.items.length, 3, "sent once and retried twice");
        for (const args of box.items) assert.equal(args[1].messageId, id);
      } finally { closeAll(s); }
    });
  });
}

test("a hook that raises is logged and counted; the gateway goes on", async () => {
  const s2 = await startServer(`
return { servers = { main = { host = "127.0.0.1", port = 0,
  onSubscribe = function(ev) error("onSubscribe failed for " .. ev.topic) end,
  namespaces = { { path = "/x", topics = { "t" }, deliveryMode = "BEST_EFFORT" } } } } }
`);
  const s = await connected(client(`${s2.url}/x`, MODES.websocket));
  try {
    const box = new Inbox(s, "t");
    assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
    await s2.waitLog(/onSubscribe failed for t/);
    await publish(s2.port, { namespace: "/x", topic: "t", payload: "still here" });
    assert.deepEqual(await box.next(), ["still here"]);
    const res = await fetch(`${s2.url}/metrics`);
    const m = /^sluice_lua_errors_total (\d+)$/m.exec(await res.text());
    assert.ok(m && Number(m[1]) >= 1, "sluice_lua_errors_total counted the error");
  } finally { closeAll(s); }
  assertCleanExit(await s2.stop());
});

test("server exits cleanly", async () => {
  closeAll(ctl);
  assertCleanExit(await srv.stop());
});
