// hooks-publish-snapshot.test.mjs - two per-publish hooks seen by real socket.io-client v4
// clients (websocket and polling+upgrade):
//   onClientPublish(client, topic, payload) -> allow [, newPayload] (with clientPublish = true):
//     a refusal answers PUBLISH_FORBIDDEN (ack and `error` event) and delivers nothing, a second
//     return value replaces the payload, an error refuses (documented default), and with
//     clientPublish = false the hook is never asked;
//   snapshot(state, topic, payload) -> state: a client subscribing late first receives the
//     merged state, then the deltas; nil clears the state; an error keeps the previous state.
// "Not delivered" is asserted with a later message on the same (FIFO) lane.
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, client, connected, Inbox, closeAll, MODES, publish,
} from "./helpers.mjs";

const CONFIG = `
local calls = 0
local function app_event(client, event, args, ack)
  if event == "calls" then
    if ack then ack(calls) end
  end
end
local function on_client_publish(client, topic, payload)
  calls = calls + 1
  if topic == "ro" then return false end
  if type(payload) ~= "table" then return true end
  if payload.forbid then return nil end
  if payload.boom then error("onClientPublish boom") end
  if payload.text then
    return true, { by = client.id, topic = topic, text = string.upper(payload.text) }
  end
  return true
end
-- a hook that never reads the payload (two parameters): the payload is not decoded
local function topic_only(client, topic)
  calls = calls + 1
  return topic ~= "ro"
end
local function merge(state, topic, payload)
  if type(payload) ~= "table" then return state end
  if payload.clear then return nil end
  if payload.boom then
    error("snapshot boom")
  end
  state = state or {}
  for k, v in pairs(payload) do state[k] = v end
  return state
end
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      namespaces = {
        { path = "/cp", topics = { "chat", "ro" }, deliveryMode = "BEST_EFFORT", clientPublish = true,
          onClientPublish = on_client_publish, onEvent = app_event },
        { path = "/cp2", topics = { "chat", "ro" }, deliveryMode = "BEST_EFFORT", clientPublish = true,
          onClientPublish = topic_only, onEvent = app_event },
        { path = "/closed", topics = { "chat" }, deliveryMode = "BEST_EFFORT", clientPublish = false,
          onClientPublish = on_client_publish, onEvent = app_event },
        { path = "/snap", topics = { "book-websocket", "other-websocket", "book-polling", "other-polling" }, deliveryMode = "BEST_EFFORT", snapshot = merge,
          clientPublish = true },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

async function errorsTotal() {
  const res = await fetch(`${srv.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  const m = /^sluice_lua_errors_total (\d+)$/m.exec(await res.text());
  assert.ok(m, "sluice_lua_errors_total in /metrics");
  return Number(m[1]);
}

let seq = 0;
const mark = (extra = {}) => ({ n: ++seq, ...extra });

for (const mode of ["websocket", "polling+upgrade"]) {
  const open = async (ns) => connected(client(`${srv.url}${ns}`, MODES[mode]));
  const sub = async (s, topic) =>
    assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic }), { ok: true });
  const cpub = (s, topic, payload) => s.timeout(5000).emitWithAck("publish", { topic, payload });

  describe(`onClientPublish (${mode})`, () => {
    it("allow delivers as is; refuse answers PUBLISH_FORBIDDEN and delivers nothing", async () => {
      const pubber = await open("/cp"), reader = await open("/cp");
      try {
        const box = new Inbox(reader, "chat");
        const errors = new Inbox(pubber, "error");
        await sub(reader, "chat");
        const x = mark({ forbid: true });
        const r = await cpub(pubber, "chat", x);
        assert.deepEqual(r, { ok: false, code: "PUBLISH_FORBIDDEN", message: "refused by onClientPublish" });
        assert.deepEqual(await errors.next(), [{ code: "PUBLISH_FORBIDDEN", message: "refused by onClientPublish" }]);
        const y = mark();
        const ok = await cpub(pubber, "chat", y);
        assert.equal(ok.ok, true, JSON.stringify(ok));
        assert.match(ok.messageId, /^msg-/);
        assert.deepEqual(await box.next(), [y], "the refused publish must not be delivered");
        const r2 = await cpub(pubber, "ro", mark());
        assert.equal(r2.code, "PUBLISH_FORBIDDEN");
      } finally { closeAll(pubber, reader); }
    });

    it("a second return value replaces the payload subscribers get", async () => {
      const pubber = await open("/cp"), reader = await open("/cp");
      try {
        const box = new Inbox(reader, "chat");
        await sub(reader, "chat");
        const r = await cpub(pubber, "chat", { text: "hello world", ignored: "dropped by the hook" });
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.deepEqual(await box.next(), [{ by: pubber.id, topic: "chat", text: "HELLO WORLD" }]);
      } finally { closeAll(pubber, reader); }
    });

    it("a hook that raises refuses (documented default) and the gateway goes on", async () => {
      const pubber = await open("/cp"), reader = await open("/cp");
      try {
        const box = new Inbox(reader, "chat");
        await sub(reader, "chat");
        const r = await cpub(pubber, "chat", mark({ boom: true }));
        assert.equal(r.code, "PUBLISH_FORBIDDEN");
        await srv.waitLog(/onClientPublish boom/);
        const y = mark();
        assert.equal((await cpub(pubber, "chat", y)).ok, true);
        assert.deepEqual(await box.next(), [y]);
      } finally { closeAll(pubber, reader); }
    });

    it("a two-parameter hook (no payload) allows and refuses by topic", async () => {
      const pubber = await open("/cp2"), reader = await open("/cp2");
      try {
        const box = new Inbox(reader, "chat");
        await sub(reader, "chat");
        assert.equal((await cpub(pubber, "ro", mark())).code, "PUBLISH_FORBIDDEN");
        const y = mark();
        assert.equal((await cpub(pubber, "chat", y)).ok, true);
        assert.deepEqual(await box.next(), [y]);
      } finally { closeAll(pubber, reader); }
    });

    it("clientPublish = false refuses before the hook is asked", async () => {
      const s = await open("/closed");
      try {
        const before = await s.timeout(5000).emitWithAck("calls");
        const r = await cpub(s, "chat", mark());
        assert.deepEqual(r, { ok: false, code: "PUBLISH_FORBIDDEN", message: "clients may not publish in this namespace" });
        assert.equal(await s.timeout(5000).emitWithAck("calls"), before, "the hook was not called");
      } finally { closeAll(s); }
    });
  });

  describe(`snapshot hook (${mode})`, () => {
    // one pair of topics per client mode: the snapshot state lives as long as the server
    const book = `book-${mode === "websocket" ? "websocket" : "polling"}`;
    const other = `other-${mode === "websocket" ? "websocket" : "polling"}`;
    it("a late subscriber first receives the merged state, then the deltas; early ones get the deltas", async () => {
      const early = await open("/snap");
      try {
        const ebox = new Inbox(early, book);
        await sub(early, book);
        const tag = `${mode}-${++seq}`;
        const deltas = [{ tag, a: 1 }, { b: 2 }, { a: 3, c: { deep: true } }];
        for (const d of deltas) await publish(srv.port, { namespace: "/snap", topic: book, payload: d });
        for (const d of deltas) assert.deepEqual(await ebox.next(), [d]);
        const late = await open("/snap");
        try {
          const lbox = new Inbox(late, book);
          await sub(late, book);
          const [state] = await lbox.next();
          assert.equal(state.tag, tag);
          assert.equal(state.a, 3);
          assert.equal(state.b, 2);
          assert.deepEqual(state.c, { deep: true });
          const d4 = { d: 4 };
          await publish(srv.port, { namespace: "/snap", topic: book, payload: d4 });
          assert.deepEqual(await lbox.next(), [d4], "then the delta, not the state");
          assert.deepEqual(await ebox.next(), [d4]);
          // a client publish goes through the snapshot too
          const r = await late.timeout(5000).emitWithAck("publish", { topic: book, payload: { e: 5 } });
          assert.equal(r.ok, true, JSON.stringify(r));
          assert.deepEqual(await lbox.next(), [{ e: 5 }]);
          const later = await open("/snap");
          try {
            const box3 = new Inbox(later, book);
            await sub(later, book);
            const [s3] = await box3.next();
            assert.equal(s3.tag, tag);
            assert.equal(s3.d, 4);
            assert.equal(s3.e, 5);
          } finally { closeAll(later); }
        } finally { closeAll(late); }
      } finally { closeAll(early); }
    });

    it("a hook error keeps the previous state (and the message is still delivered)", async () => {
      const tag = `${mode}-${++seq}`;
      const live = await open("/snap");
      try {
        const lbox = new Inbox(live, other);
        await sub(live, other);
        await publish(srv.port, { namespace: "/snap", topic: other, payload: { tag, v: 1 } });
        assert.deepEqual(await lbox.next(), [{ tag, v: 1 }]);
        const before = await errorsTotal();
        await publish(srv.port, { namespace: "/snap", topic: other, payload: { boom: true } });
        assert.deepEqual(await lbox.next(), [{ boom: true }], "delivered although the hook failed");
        await srv.waitLog(/snapshot boom/);
        assert.ok(await errorsTotal() >= before + 1);
        const a = await open("/snap");
        try {
          const box = new Inbox(a, other);
          await sub(a, other);
          assert.deepEqual(await box.next(), [{ tag, v: 1 }], "the state before the failing call");
        } finally { closeAll(a); }
      } finally { closeAll(live); }
    });

    it("a hook returning nil clears the state: a new subscriber gets no snapshot, the next state starts empty", async () => {
      const tag = `${mode}-${++seq}`;
      await publish(srv.port, { namespace: "/snap", topic: other, payload: { tag, old: true } });
      await publish(srv.port, { namespace: "/snap", topic: other, payload: { clear: true } });
      const b = await open("/snap");
      try {
        const box = new Inbox(b, other);
        await sub(b, other);
        const y = mark();
        await publish(srv.port, { namespace: "/snap", topic: other, payload: y });
        assert.deepEqual(await box.next(), [y], "no snapshot after the hook returned nil (sl_lua.h contract)");
      } finally { closeAll(b); }
      // the state built after the clear does not carry the old fields
      const c = await open("/snap");
      try {
        const box = new Inbox(c, other);
        await sub(c, other);
        const [st] = await box.next();
        assert.equal(st.old, undefined, `state after a clear must start empty, got ${JSON.stringify(st)}`);
      } finally { closeAll(c); }
    });
  });
}

test("server exits cleanly", async () => {
  assertCleanExit(await srv.stop());
});
