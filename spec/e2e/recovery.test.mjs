// recovery.test.mjs - connection-state recovery (README "Connection-state recovery") with the
// real socket.io-client and its own recovery code (pid and offset in the CONNECT auth,
// socket.recovered). The transport is cut by a TCP proxy between the client and the server
// (recovery-helpers.mjs): both connections are destroyed, the client sees "transport close",
// the server a closed connection; the proxy refuses reconnections until the test releases it.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { io } from "socket.io-client";
import { startServer, writeConfig, publish, sleep, withTimeout, assertCleanExit } from "./helpers.mjs";
import { startDelivery, metrics, mval, luaValue } from "./delivery-helpers.mjs";
import { CutProxy } from "./recovery-helpers.mjs";

// A socket.io-client socket through proxy px, reconnecting fast, recording the deliveries of
// `topics` as {payload, meta, offset, args}.
function open(px, nsp, topics, opts = {}) {
  const s = io(`http://127.0.0.1:${px.port}${nsp}`, {
    forceNew: true, transports: ["websocket"], reconnectionDelay: 50, reconnectionDelayMax: 100,
    randomizationFactor: 0, timeout: 5000, ...opts,
  });
  s.got = [];
  for (const t of topics) {
    s.on(t, (...args) => s.got.push({ topic: t, payload: args[0], args }));
  }
  return s;
}

const event = (s, ev, ms = 5000) => withTimeout(new Promise((r) => s.once(ev, (...a) => r(a))), ms, `${ev} of ${s.nsp}`);
// connectedOrError: null once connected, or the server's CONNECT_ERROR. A reconnection attempt
// that the proxy refused while holding is a transport error the client retries: skipped.
async function connectedOrError(s, ms = 5000) {
  return withTimeout(new Promise((resolve) => {
    const err = (e) => {
      if (e?.type === "TransportError" || e?.data === undefined) return;
      s.off("connect_error", err);
      resolve(e);
    };
    s.once("connect", () => { s.off("connect_error", err); resolve(null); });
    s.on("connect_error", err);
  }), ms, `connect of ${s.nsp}`);
}
async function waitFor(pred, ms = 5000, what = "a condition") {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
async function subscribe(s, topic) {
  const r = await s.timeout(5000).emitWithAck("subscribe", { topic });
  assert.equal(r.ok, true, JSON.stringify(r));
}
const msgs = (nsp, topic, payloads) => payloads.map((payload) => ({ namespace: nsp, topic, payload }));
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

// cut the transport, wait until the client saw it, run `during`, then let it reconnect.
async function cutAround(px, s, during) {
  const disc = event(s, "disconnect");
  px.cut();
  const [reason] = await disc;
  assert.equal(reason, "transport close");
  await during();
  const back = connectedOrError(s);
  px.release();
  return back;
}

const m = async (srv, name, labels) => mval(await metrics(srv.port), name, labels);

describe("recovery on one node", () => {
  let srv, px;
  const NS = [
    { path: "/be", topics: ["t", "u"], maxQueuedMessagesPerClient: 1000, recovery: { maxDisconnectionMs: 10000 } },
    { path: "/alo", topics: ["t"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW", maxRetries: 5,
      ackTimeoutMs: 20000, maxInFlight: 4, maxQueuedMessagesPerClient: 100, recovery: { maxDisconnectionMs: 10000 } },
    { path: "/short", topics: ["t"], recovery: { maxDisconnectionMs: 200 } },
    { path: "/small", topics: ["t"], recovery: { historySize: 5 } },
    { path: "/coal", topics: ["t"], overflowAction: "COALESCE", coalesce: true, coalesceKey: "k",
      maxQueuedMessagesPerClient: 5, recovery: {} },
    { path: "/rej", topics: ["t"], overflowAction: "REJECT_NEW", maxQueuedMessagesPerClient: 5, recovery: {} },
    { path: "/drop", topics: ["t"], overflowAction: "DROP_OLDEST", maxQueuedMessagesPerClient: 5, recovery: {} },
    { path: "/plain", topics: ["t"] },
  ];
  before(async () => {
    srv = await startDelivery(NS);
    px = new CutProxy(srv.port);
    await px.listen();
  });
  after(async () => { await px?.close(); if (srv) assertCleanExit(await srv.stop()); });

  it("BEST_EFFORT: 100 messages published while cut arrive exactly once, in order; same id and pid", async () => {
    const s = open(px, "/be", ["t", "u"]);
    try {
      await event(s, "connect");
      assert.equal(s.recovered, false);
      assert.match(s._pid, /^[A-Za-z0-9_-]{24}$/); // 144 random bits
      await subscribe(s, "t");
      await subscribe(s, "u");
      await publish(srv.port, msgs("/be", "t", range(1, 5)));
      await waitFor(() => s.got.length === 5, 5000, "5 deliveries");
      // every delivery carries its offset as the last argument (a string)
      for (const g of s.got) assert.equal(typeof g.args.at(-1), "string");
      assert.equal(s.got[0].args.length, 2);
      const id = s.id, pid = s._pid;
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/be", "t", range(6, 105)));
        await publish(srv.port, msgs("/be", "u", ["u1"]));
      });
      assert.equal(err, null);
      assert.equal(s.recovered, true);
      assert.equal(s.id, id);
      assert.equal(s._pid, pid);
      await waitFor(() => s.got.length === 106, 5000, "106 deliveries");
      await sleep(100);
      assert.deepEqual(s.got.filter((g) => g.topic === "t").map((g) => g.payload), range(1, 105));
      assert.deepEqual(s.got.filter((g) => g.topic === "u").map((g) => g.payload), ["u1"]);
      // subscriptions came back: a new publish arrives without subscribing again
      await publish(srv.port, msgs("/be", "t", [106]));
      await waitFor(() => s.got.length === 107, 5000, "the delivery after recovery");
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/be", result: "recovered" }), 1);
      assert.equal(await m(srv, "sluice_recovery_replayed_total", { namespace: "/be" }), 101);
    } finally { s.close(); }
  });

  it("AT_LEAST_ONCE, maxInFlight 4, cut with messages in flight: every message acked once, none lost", async () => {
    const s = open(px, "/alo", ["t"]);
    const okAcks = new Map();
    let acking = false;
    const deferred = [];
    const ack = (meta) => {
      s.timeout(10000).emitWithAck("ack", { topic: "t", messageId: meta.messageId }).then((r) => {
        if (r.ok) okAcks.set(meta.messageId, (okAcks.get(meta.messageId) || 0) + 1);
      }, () => {});
    };
    s.on("t", (payload, meta) => (acking ? ack(meta) : deferred.push(meta)));
    try {
      await event(s, "connect");
      await subscribe(s, "t");
      const retries0 = await m(srv, "streamfence_retries_total", { namespace: "/alo" });
      const ids1 = await publish(srv.port, msgs("/alo", "t", range(1, 10)));
      await waitFor(() => s.got.length === 4, 5000, "the 4 messages of the window");
      await sleep(100);
      assert.equal(s.got.length, 4); // the window is full: nothing else was sent
      // the ALO shape: [payload, meta, offset]
      assert.deepEqual(Object.keys(s.got[0].args[1]).sort(), ["ackRequired", "messageId", "namespace", "topic"]);
      assert.equal(typeof s.got[0].args[2], "string");
      let ids2;
      const err = await cutAround(px, s, async () => {
        ids2 = await publish(srv.port, msgs("/alo", "t", range(11, 20)));
      });
      assert.equal(err, null);
      assert.equal(s.recovered, true);
      acking = true;
      for (const meta of deferred.splice(0)) ack(meta);
      const all = [...ids1, ...ids2];
      await waitFor(() => all.every((id) => okAcks.has(id)), 10000, "an ok ack for each of the 20 messages");
      await sleep(200);
      for (const id of all) assert.equal(okAcks.get(id), 1, `message ${id} acked ${okAcks.get(id)} times`);
      assert.deepEqual([...new Set(s.got.map((g) => g.payload))].sort((a, b) => a - b), range(1, 20));
      // the 4 in flight were sent again (same messageId), nothing else twice
      assert.equal(s.got.length, 24);
      assert.equal(await m(srv, "streamfence_retries_total", { namespace: "/alo" }) - retries0, 4);
      assert.equal(await m(srv, "sluice_recovery_resent_total", { namespace: "/alo" }), 4);
    } finally { s.close(); }
  });

  it("a session kept past maxDisconnectionMs is not recovered (expired), nothing replayed", async () => {
    const s = open(px, "/short", ["t"]);
    try {
      await event(s, "connect");
      await subscribe(s, "t");
      await publish(srv.port, msgs("/short", "t", [1]));
      await waitFor(() => s.got.length === 1, 5000, "one delivery");
      const id = s.id;
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/short", "t", [2, 3]));
        await sleep(500);
      });
      assert.equal(err, null);
      assert.equal(s.recovered, false);
      assert.notEqual(s.id, id);
      // not subscribed any more: the next message on t does not arrive; subscribe, then it does
      await publish(srv.port, msgs("/short", "t", [4]));
      await subscribe(s, "t");
      await publish(srv.port, msgs("/short", "t", [5]));
      await waitFor(() => s.got.length === 2, 5000, "the delivery after subscribing again");
      assert.deepEqual(s.got.map((g) => g.payload), [1, 5]);
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/short", result: "expired" }), 1);
    } finally { s.close(); }
  });

  it("an offset older than the history is not recovered (no partial replay)", async () => {
    const s = open(px, "/small", ["t"]);
    try {
      await event(s, "connect");
      await subscribe(s, "t");
      await publish(srv.port, msgs("/small", "t", [1]));
      await waitFor(() => s.got.length === 1, 5000, "one delivery");
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/small", "t", range(2, 21))); // 20 > historySize 5
      });
      assert.equal(err, null);
      assert.equal(s.recovered, false);
      await subscribe(s, "t");
      await publish(srv.port, msgs("/small", "t", ["after"]));
      await waitFor(() => s.got.length === 2, 5000, "the delivery after subscribing again");
      assert.deepEqual(s.got.map((g) => g.payload), [1, "after"]);
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/small", result: "expired" }), 1);
    } finally { s.close(); }
  });

  it("an unknown pid and the pid of a live session recover nothing", async () => {
    const a = open(px, "/be", ["t"]);
    let b, c;
    try {
      await event(a, "connect");
      await subscribe(a, "t");
      await publish(srv.port, msgs("/be", "t", ["x"]));
      await waitFor(() => a.got.length === 1, 5000, "one delivery");
      const unknown0 = await m(srv, "sluice_recoveries_total", { namespace: "/be", result: "unknown" });
      b = open(px, "/be", ["t"], { auth: { pid: "nope-not-a-pid", offset: a.got[0].args.at(-1) } });
      await event(b, "connect");
      assert.equal(b.recovered, false);
      // a live session's pid: a fresh session, none of a's state
      c = open(px, "/be", ["t"], { auth: { pid: a._pid, offset: a.got[0].args.at(-1) } });
      await event(c, "connect");
      assert.notEqual(c.id, a.id);
      assert.notEqual(c._pid, a._pid);
      await publish(srv.port, msgs("/be", "t", ["y"]));
      await waitFor(() => a.got.length === 2, 5000, "a's second delivery");
      await sleep(100);
      assert.equal(c.got.length, 0);
      assert.equal(b.got.length, 0);
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/be", result: "unknown" }) - unknown0, 2);
    } finally { a.close(); b?.close(); c?.close(); }
  });

  it("one pid recovers one session: presenting it again after the recovery gives a fresh one", async () => {
    const a = open(px, "/be", ["t"]);
    let c;
    try {
      await event(a, "connect");
      await subscribe(a, "t");
      await publish(srv.port, msgs("/be", "t", ["p"]));
      await waitFor(() => a.got.length === 1, 5000, "one delivery");
      const err = await cutAround(px, a, async () => {});
      assert.equal(err, null);
      assert.equal(a.recovered, true);
      c = open(px, "/be", ["t"], { auth: { pid: a._pid, offset: a.got[0].args.at(-1) } });
      await event(c, "connect");
      assert.notEqual(c.id, a.id);
      await publish(srv.port, msgs("/be", "t", ["q"]));
      await waitFor(() => a.got.length === 2, 5000, "a's delivery");
      await sleep(100);
      assert.equal(c.got.length, 0);
    } finally { a.close(); c?.close(); }
  });

  it("overflow during a long disconnection: COALESCE keeps the newest per key", async () => {
    const s = open(px, "/coal", ["t"]);
    try {
      await event(s, "connect");
      await subscribe(s, "t");
      const coalesced0 = await m(srv, "streamfence_messages_coalesced_total", { namespace: "/coal" });
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/coal", "t", range(1, 30).map((i) => ({ k: `k${i % 3}`, v: i }))));
      });
      assert.equal(err, null);
      assert.equal(s.recovered, true);
      await publish(srv.port, msgs("/coal", "t", [{ k: "end", v: 0 }]));
      await waitFor(() => s.got.some((g) => g.payload.k === "end"), 5000, "the end marker");
      const got = s.got.filter((g) => g.payload.k !== "end").map((g) => g.payload);
      assert.deepEqual(got.map((p) => p.v).sort((a, b) => a - b), [28, 29, 30]);
      assert.equal(await m(srv, "streamfence_messages_coalesced_total", { namespace: "/coal" }) - coalesced0, 27);
    } finally { s.close(); }
  });

  for (const [nsp, kept, metricName, labels] of [
    ["/rej", range(1, 5), "streamfence_queue_overflow_total", { reason: "queue full with REJECT_NEW" }],
    ["/drop", range(26, 30), "streamfence_messages_dropped_total", {}],
  ]) {
    it(`overflow during a long disconnection: ${nsp === "/rej" ? "REJECT_NEW" : "DROP_OLDEST"} drops and counts exactly`, async () => {
      const s = open(px, nsp, ["t"]);
      try {
        await event(s, "connect");
        await subscribe(s, "t");
        const before = await m(srv, metricName, { namespace: nsp, ...labels });
        const err = await cutAround(px, s, async () => {
          await publish(srv.port, msgs(nsp, "t", range(1, 30)));
        });
        assert.equal(err, null);
        assert.equal(s.recovered, true);
        await waitFor(() => s.got.length === 5, 5000, "the lane's 5");
        await publish(srv.port, msgs(nsp, "t", ["end"]));
        await waitFor(() => s.got.length === 6, 5000, "the end marker");
        assert.deepEqual(s.got.map((g) => g.payload), [...kept, "end"]);
        assert.equal(await m(srv, metricName, { namespace: nsp, ...labels }) - before, 25);
      } finally { s.close(); }
    });
  }

  it("the client's own disconnect and a namespace without recovery keep nothing", async () => {
    const s = open(px, "/plain", ["t"]);
    try {
      await event(s, "connect");
      assert.equal(s._pid, undefined); // no pid without recovery: the CONNECT reply is {sid}
      await subscribe(s, "t");
      await publish(srv.port, msgs("/plain", "t", [1]));
      await waitFor(() => s.got.length === 1, 5000, "one delivery");
      assert.equal(s.got[0].args.length, 1); // no offset either
    } finally { s.close(); }
    const a = open(px, "/be", ["t"]);
    try {
      await event(a, "connect");
      const pid = a._pid;
      a.disconnect();
      await sleep(100);
      const unknown0 = await m(srv, "sluice_recoveries_total", { namespace: "/be", result: "unknown" });
      const b = open(px, "/be", ["t"], { auth: { pid, offset: "x" } });
      await event(b, "connect");
      b.close();
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/be", result: "unknown" }) - unknown0, 1);
    } finally { a.close(); }
  });
});

describe("recovery and authorization", () => {
  const cfg = (tokens) => `return ${luaValue({ servers: { main: {
    host: "127.0.0.1", port: 0, tokens, onConnect: { __lua: "function(ev) io.stderr:write('EVENT connect recovered=' .. tostring(ev.recovered) .. '\\n') end" },
    onDisconnect: { __lua: "function(ev) io.stderr:write('EVENT disconnect recoverable=' .. tostring(ev.recoverable) .. '\\n') end" },
    namespaces: [{ path: "/sec", topics: ["t"], authRequired: true, recovery: { maxDisconnectionMs: 10000 } }],
  } } })}\n`;
  let srv, px, file;
  before(async () => {
    file = writeConfig(cfg(["good", "good2"]));
    srv = await startServer(null, { file });
    px = new CutProxy(srv.port);
    await px.listen();
  });
  after(async () => { await px?.close(); if (srv) assertCleanExit(await srv.stop()); });

  it("the connect and disconnect events say whether the session was recovered", async () => {
    const s = open(px, "/sec", ["t"], { auth: { token: "good" } });
    try {
      await event(s, "connect");
      await srv.waitLog(/EVENT connect recovered=false/);
      const err = await cutAround(px, s, async () => {
        await srv.waitLog(/EVENT disconnect recoverable=true/);
      });
      assert.equal(err, null);
      assert.equal(s.recovered, true);
      await srv.waitLog(/EVENT connect recovered=true/);
    } finally { s.close(); }
  });

  it("another principal's token does not recover the session: fresh session, nothing replayed", async () => {
    const s = open(px, "/sec", ["t"], { auth: { token: "good" } });
    try {
      await event(s, "connect");
      await subscribe(s, "t");
      await publish(srv.port, msgs("/sec", "t", [1]));
      await waitFor(() => s.got.length === 1, 5000, "one delivery");
      const denied0 = await m(srv, "sluice_recoveries_total", { namespace: "/sec", result: "denied" });
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/sec", "t", [2, 3]));
        s.auth = { token: "good2" }; // the same client comes back as someone else
      });
      assert.equal(err, null);
      assert.equal(s.recovered, false);
      await publish(srv.port, msgs("/sec", "t", [4]));
      await subscribe(s, "t");
      await publish(srv.port, msgs("/sec", "t", [5]));
      await waitFor(() => s.got.length === 2, 5000, "the delivery after subscribing again");
      assert.deepEqual(s.got.map((g) => g.payload), [1, 5]);
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/sec", result: "denied" }) - denied0, 1);
    } finally { s.close(); }
  });

  it("a token revoked between the connections: not recovered, CONNECT refused, nothing replayed", async () => {
    const s = open(px, "/sec", ["t"], { auth: { token: "good" } });
    try {
      await event(s, "connect");
      await subscribe(s, "t");
      const denied0 = await m(srv, "sluice_recoveries_total", { namespace: "/sec", result: "denied" });
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/sec", "t", [1, 2]));
        writeFileSync(file, cfg(["good2"]));
        const r = await fetch(`http://127.0.0.1:${srv.port}/api/reload`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
        assert.equal(r.status, 200);
      });
      assert.ok(err, "the CONNECT was refused");
      assert.equal(err.data?.code, "AUTH_REJECTED");
      await sleep(200);
      assert.equal(s.got.length, 0);
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/sec", result: "denied" }) - denied0, 1);
    } finally { s.close(); }
  });
});

describe("recovery and the Lua client object", () => {
  const CFG = `
local kept = nil
local function app(client, event, args, ack)
  if event == "keep" then kept = client; if ack then ack(true) end
  elseif event == "kick" then client:disconnect()
  elseif event == "poke" then
    -- the kept client, maybe parked: emit fails softly, its fields stay readable
    local ok = pcall(function() kept:emit("poked", 1) end)
    if ack then ack(kept.id, kept.transport, ok) end
  elseif event == "kickkept" then kept:disconnect(); if ack then ack(true) end
  end
end
return { servers = { main = { host = "127.0.0.1", port = 0, namespaces = {
  { path = "/l", topics = { "t" }, onEvent = app, recovery = { maxDisconnectionMs = 10000 } } } } } }
`;
  let srv, px;
  before(async () => {
    srv = await startServer(CFG);
    px = new CutProxy(srv.port);
    await px.listen();
  });
  after(async () => { await px?.close(); if (srv) assertCleanExit(await srv.stop()); });

  it("a script holding a parked client can read it; its disconnect() ends the recovery", async () => {
    const a = open(px, "/l", ["t"]);
    const ctl = io(`http://127.0.0.1:${srv.port}/l`, { forceNew: true, transports: ["websocket"] });
    try {
      await Promise.all([event(a, "connect"), event(ctl, "connect")]);
      assert.equal(await a.timeout(5000).emitWithAck("keep"), true);
      const parkedId = a.id;
      const disc = event(a, "disconnect");
      px.cut();
      await disc;
      await waitFor(() => /kept for recovery/.test(srv.stderr()), 5000, "the park");
      const [id, transport, ok] = await withTimeout(new Promise((r) => ctl.emit("poke", (...args) => r(args))), 5000, "poke");
      assert.equal(ok, false); // emit to a parked client fails (SL_ESTATE), the script goes on
      assert.equal(id, parkedId);
      assert.equal(transport, "none");
      assert.equal(await ctl.timeout(5000).emitWithAck("kickkept"), true);
      const unknown0 = await m(srv, "sluice_recoveries_total", { namespace: "/l", result: "unknown" });
      const back = connectedOrError(a);
      px.release();
      assert.equal(await back, null);
      assert.equal(a.recovered, false);
      assert.equal(await m(srv, "sluice_recoveries_total", { namespace: "/l", result: "unknown" }) - unknown0, 1);
    } finally { a.close(); ctl.close(); }
  });

  it("a server kick ends the session: the client's next CONNECT is a new one", async () => {
    const a = open(px, "/l", ["t"]);
    try {
      await event(a, "connect");
      const id = a.id;
      const disc = event(a, "disconnect");
      a.emit("kick");
      assert.deepEqual((await disc)[0], "io server disconnect");
      a.connect();
      await event(a, "connect");
      assert.equal(a.recovered, false);
      assert.notEqual(a.id, id);
    } finally { a.close(); }
  });
});

describe("recovery across a hot reload", () => {
  const cfg = (topics) => `return ${luaValue({ servers: { main: { host: "127.0.0.1", port: 0,
    namespaces: [{ path: "/h", topics, recovery: { maxDisconnectionMs: 10000 } }] } } })}\n`;
  let srv, px, file;
  const reload = async (topics) => {
    writeFileSync(file, cfg(topics));
    const r = await fetch(`http://127.0.0.1:${srv.port}/api/reload`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    assert.equal(r.status, 200, await r.text());
  };
  before(async () => {
    file = writeConfig(cfg(["a", "b"]));
    srv = await startServer(null, { file });
    px = new CutProxy(srv.port);
    await px.listen();
  });
  after(async () => { await px?.close(); if (srv) assertCleanExit(await srv.stop()); });

  it("a reload that keeps the session's topics keeps the session (topics moved, history kept)", async () => {
    const s = open(px, "/h", ["a", "b"]);
    try {
      await event(s, "connect");
      await subscribe(s, "b");
      await publish(srv.port, msgs("/h", "b", [1]));
      await waitFor(() => s.got.length === 1, 5000, "one delivery");
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/h", "b", [2, 3]));
        await reload(["z", "b", "a", "c"]); // every topic moves in the array
        await publish(srv.port, msgs("/h", "b", [4]));
      });
      assert.equal(err, null);
      assert.equal(s.recovered, true);
      await waitFor(() => s.got.length === 4, 5000, "the missed deliveries");
      assert.deepEqual(s.got.map((g) => g.payload), [1, 2, 3, 4]);
    } finally { s.close(); }
  });

  it("a reload that removes a topic of a kept session discards it (no partial recovery)", async () => {
    await reload(["a", "b"]);
    const s = open(px, "/h", ["a", "b"]);
    try {
      await event(s, "connect");
      await subscribe(s, "a");
      await subscribe(s, "b");
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/h", "b", [1]));
        await reload(["b"]);
      });
      assert.equal(err, null);
      assert.equal(s.recovered, false);
      await sleep(100);
      assert.equal(s.got.length, 0);
    } finally { s.close(); }
  });

  it("a reload that turns recovery off discards the kept sessions and the history", async () => {
    await reload(["a", "b"]);
    const s = open(px, "/h", ["a"]);
    try {
      await event(s, "connect");
      await subscribe(s, "a");
      const err = await cutAround(px, s, async () => {
        await publish(srv.port, msgs("/h", "a", [1]));
        writeFileSync(file, `return ${luaValue({ servers: { main: { host: "127.0.0.1", port: 0, namespaces: [{ path: "/h", topics: ["a", "b"] }] } } })}\n`);
        const r = await fetch(`http://127.0.0.1:${srv.port}/api/reload`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
        assert.equal(r.status, 200);
      });
      assert.equal(err, null);
      assert.ok(!s.recovered); // no pid in the reply: the client's recovered is undefined
      assert.equal(s._pid, undefined);
      assert.equal(mval(await metrics(srv.port), "sluice_recovery_history_messages", { namespace: "/h" }), 0);
    } finally { s.close(); }
  });
});
