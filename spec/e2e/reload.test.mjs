// Hot reload: POST /api/reload, SIGHUP and the file watch swap a new config in while clients
// stay connected; a broken config leaves the old one running.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import {
  startServer, client, connected, Inbox, closeAll, publish, sleep, withTimeout, once,
  assertCleanExit, writeConfig,
} from "./helpers.mjs";

const cfg = ({ version, topics = '"ticks", "news"', extraNs = true, port = 0, alo = false }) => `
return { servers = { main = {
  host = "127.0.0.1", port = ${port},
  namespaces = {
    { path = "/feed", topics = { ${topics} }, overflowAction = "DROP_OLDEST" },
    ${extraNs ? '{ path = "/extra", topics = { "x" } },' : ""}
    ${alo ? `{ path = "/alo", topics = { "orders" }, deliveryMode = "AT_LEAST_ONCE",
      overflowAction = "REJECT_NEW", maxQueuedMessagesPerClient = 4096,
      maxQueuedBytesPerClient = 16777216, maxRetries = 5, ackTimeoutMs = 1000, maxInFlight = 64 },` : ""}
  },
  onStart = function(server)
    sluice.every(20, function() sluice.publish("/feed", "ticks", { version = ${version} }) end)
  end,
} } }
`;

// A server on cfg({version: 1}) and one websocket client subscribed to "ticks" that has
// received its first tick.
async function tickingClient() {
  const file = writeConfig(cfg({ version: 1 }));
  const srv = await startServer(null, { file });
  const s = client(`${srv.url}/feed`, { transports: ["websocket"] });
  await connected(s);
  const ticks = new Inbox(s, "ticks");
  s.emit("subscribe", { topic: "ticks" });
  await ticks.next();
  return { file, srv, s, ticks };
}

async function reload(port) {
  const r = await fetch(`http://127.0.0.1:${port}/api/reload`, { method: "POST", headers: { "content-type": "application/json" }, signal: AbortSignal.timeout(10000) });
  return { status: r.status, body: await r.json() };
}

async function metric(port, re) {
  const t = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = t.match(re);
  return m ? Number(m[1]) : null;
}

test("reload keeps the connection and changes behaviour from the next publish", async () => {
  const file = writeConfig(cfg({ version: 1 }));
  const srv = await startServer(null, { file });
  const s = client(`${srv.url}/feed`, { transports: ["websocket"] });
  try {
    await connected(s);
    const id = s.id;
    let disconnected = false;
    s.on("disconnect", () => { disconnected = true; });
    const ticks = new Inbox(s, "ticks");
    s.emit("subscribe", { topic: "ticks" });
    await ticks.until(([p]) => p.version === 1);
    writeFileSync(file, cfg({ version: 2, topics: '"ticks", "news", "alerts"' }));
    const r = await reload(srv.port);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.reloaded, true);
    await ticks.until(([p]) => p.version === 2);
    // After the first version-2 tick, no version-1 tick may follow (the old timer stopped).
    const after = ticks.items.length;
    await ticks.count(after + 5, 5000);
    assert.ok(ticks.items.slice(after).every(([p]) => p.version === 2), "old producer still running");
    // The added topic is live; the client is the same socket.
    const alerts = new Inbox(s, "alerts");
    const ack = await s.timeout(3000).emitWithAck("subscribe", { topic: "alerts" });
    assert.deepEqual(ack, { ok: true });
    await publish(srv.port, { namespace: "/feed", topic: "alerts", payload: { a: 1 } });
    assert.deepEqual((await alerts.next())[0], { a: 1 });
    assert.equal(s.id, id);
    assert.equal(disconnected, false);
    // The API reload and (debounced) the file watch may both have reloaded.
    assert.ok((await metric(srv.port, /sluice_reloads_total\{result="ok"\} (\d+)/)) >= 1);
  } finally {
    closeAll(s);
    assertCleanExit(await srv.stop());
  }
});

test("a broken config is refused and the old behaviour keeps running", async () => {
  const { file, srv, s, ticks } = await tickingClient();
  try {
    for (const bad of [
      "return { servers = { main = { namespaces = { { path = 'feed', topics = {'t'} } } } } }",
      "return { servers = {",
      "error('boom')",
    ]) {
      writeFileSync(file, bad);
      const r = await reload(srv.port);
      assert.equal(r.status, 400);
      assert.equal(r.body.error.code, "RELOAD_FAILED");
      assert.ok(r.body.error.message.length > 0);
    }
    assert.match(srv.stderr(), /reload failed/);
    const n = ticks.items.length;
    await ticks.count(n + 3);
    assert.ok(ticks.items.slice(n).every(([p]) => p.version === 1));
    assert.ok((await metric(srv.port, /sluice_reloads_total\{result="error"\} (\d+)/)) >= 3);
  } finally {
    closeAll(s);
    assertCleanExit(await srv.stop());
  }
});

test("a removed namespace disconnects its sockets; a removed topic stops its deliveries", async () => {
  const file = writeConfig(cfg({ version: 1 }));
  const srv = await startServer(null, { file });
  const feed = client(`${srv.url}/feed`, { transports: ["websocket"] });
  const extra = feed.io.socket("/extra");
  try {
    await connected(feed);
    await connected(extra);
    const news = new Inbox(feed, "news");
    await feed.timeout(3000).emitWithAck("subscribe", { topic: "news" });
    await publish(srv.port, { namespace: "/feed", topic: "news", payload: 1 });
    await news.next();
    const gone = once(extra, "disconnect");
    writeFileSync(file, cfg({ version: 1, topics: '"ticks"', extraNs: false }));
    assert.equal((await reload(srv.port)).status, 200);
    assert.equal((await gone)[0], "io server disconnect");
    assert.equal(feed.connected, true);
    const r = await fetch(`${srv.url}/api/publish`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ namespace: "/feed", topic: "news", payload: 2 }),
    });
    assert.equal(r.status, 404);
    const ack = await feed.timeout(3000).emitWithAck("subscribe", { topic: "news" });
    assert.equal(ack.code, "UNKNOWN_TOPIC");
  } finally {
    closeAll(feed);
    assertCleanExit(await srv.stop());
  }
});

test("SIGHUP and a file change reload; a changed port is reported as needing a restart", async () => {
  const { file, srv, s, ticks } = await tickingClient();
  try {
    writeFileSync(file, cfg({ version: 2 }));
    srv.proc.kill("SIGHUP");
    await ticks.until(([p]) => p.version === 2);
    // The file watch picks up an edit by itself.
    writeFileSync(file, cfg({ version: 3 }));
    await ticks.until(([p]) => p.version === 3, 8000);
    writeFileSync(file, cfg({ version: 4, port: srv.port + 1 }));
    const r = await reload(srv.port);
    assert.equal(r.status, 400);
    assert.match(r.body.error.message, /needs a restart/);
    assert.equal(s.connected, true);
  } finally {
    closeAll(s);
    assertCleanExit(await srv.stop());
  }
});

test("reloads under a 1 kHz feed to 100 clients drop no connection and no AT_LEAST_ONCE message", async () => {
  const file = writeConfig(cfg({ version: 1, alo: true }));
  const srv = await startServer(null, { file });
  const N = 100;
  const socks = [];
  const got = [];
  let disconnects = 0;
  try {
    for (let i = 0; i < N; i++) {
      const s = client(`${srv.url}/alo`, { transports: ["websocket"] });
      const seen = new Set();
      got.push(seen);
      s.on("orders", (payload, meta) => {
        seen.add(meta.messageId);
        s.emit("ack", { topic: meta.topic, messageId: meta.messageId });
      });
      s.on("disconnect", () => { disconnects++; });
      socks.push(s);
    }
    await Promise.all(socks.map((s) => connected(s, 15000)));
    await Promise.all(socks.map((s) => s.timeout(5000).emitWithAck("subscribe", { topic: "orders" })));
    const ids = [];
    const t0 = Date.now();
    let reloads = 0;
    // 1,000 messages/s for ~2 s, in batches of 10 every 10 ms; reload three times meanwhile.
    for (let b = 0; b < 200; b++) {
      const batch = [];
      for (let k = 0; k < 10; k++) batch.push({ namespace: "/alo", topic: "orders", payload: { b, k } });
      ids.push(...(await publish(srv.port, batch)));
      if (b === 50 || b === 100 || b === 150) {
        writeFileSync(file, cfg({ version: 10 + b, alo: true }));
        const r = await reload(srv.port);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        reloads++;
      }
      const due = t0 + (b + 1) * 10;
      if (Date.now() < due) await sleep(due - Date.now());
    }
    assert.equal(reloads, 3);
    await withTimeout((async () => {
      while (!got.every((seen) => ids.every((id) => seen.has(id)))) await sleep(50);
    })(), 30000, "every client to receive every message");
    assert.equal(disconnects, 0);
    assert.ok(socks.every((s) => s.connected));
  } finally {
    closeAll(...socks);
    assertCleanExit(await srv.stop());
  }
});

test("sluice_lua_errors_total stays monotonic across a reload (the old VM's errors are kept)", async () => {
  const erring = (v) => `return { servers = { main = { host = "127.0.0.1", port = 0,
    namespaces = { { path = "/feed", topics = { "ticks" } } },
    onStart = function() sluice.every(20, function() error("tick ${v} failed") end) end } } }`;
  const file = writeConfig(erring(1));
  const srv = await startServer(null, { file });
  try {
    const errors = () => metric(srv.port, /sluice_lua_errors_total (\d+)/);
    await withTimeout((async () => { while ((await errors()) < 5) await sleep(20); })(), 5000, "5 Lua errors");
    const before = await errors();
    writeFileSync(file, erring(2));
    assert.equal((await reload(srv.port)).status, 200);
    const after = await errors();
    assert.ok(after >= before, `counter went back from ${before} to ${after}`);
  } finally {
    assertCleanExit(await srv.stop());
  }
});
