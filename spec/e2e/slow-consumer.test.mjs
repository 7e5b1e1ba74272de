// slow-consumer.test.mjs - memory stays bounded when a client stops reading (DESIGN.md §2,
// issue "Delivery"): a raw WebSocket client (hand-made on a net socket) subscribes and then
// stops reading (socket.pause()) - and, separately, a polling session that stops polling -
// while a fast socket.io-client subscriber keeps up and ~100 MiB
// of ~1 KiB messages are published through /api/publish. The server's RSS must stay within
// baseline + 64 MiB, the fast client must get every message in order, and once the slow client
// reads again it gets an in-order subset ending with the newest message (DROP_OLDEST).
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, LUA_APP, client, connected, closeAll, MODES, RawWs, publish,
  rssKiB, withTimeout, ASAN, handshake, eioGet, eioPost, RS,
} from "./helpers.mjs";

const TOTAL = ASAN ? 30000 : 100000;  // messages
const BATCH = 250;                    // messages per /api/publish request
const PAD = "x".repeat(1000);         // ~1 KiB payloads
const BOUND_MIB = ASAN ? 512 : 64;    // ASan's quarantine keeps freed memory resident

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0, drainTimeoutMs = 500, -- paused clients never drain
      namespaces = {
        { path = "/feed", topics = { "prices" }, deliveryMode = "BEST_EFFORT",
          overflowAction = "DROP_OLDEST", maxQueuedMessagesPerClient = 1024,
          maxQueuedBytesPerClient = 2097152, onEvent = app_event },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

const seqOf = (m) => {
  if (typeof m !== "string" || !m.startsWith('42/feed,["prices",')) return null;
  return JSON.parse(m.slice("42/feed,".length))[1].seq;
};

// Slow clients. Each: open() subscribes and proves it; seen(seq) waits until seq was read;
// pause() stops reading; resumeCollect(last) reads again and returns the seqs it got.
function rawWebsocketSlow() {
  let slow;
  return {
    kind: "raw websocket (net socket, paused)",
    async open() {
      slow = await RawWs.connect(srv.port);
      await slow.until((m) => typeof m === "string" && m.startsWith("0{"));
      slow.sendText("40/feed,");
      await slow.until((m) => typeof m === "string" && m.startsWith("40/feed,{"));
      slow.sendText('42/feed,["subscribe",{"topic":"prices"}]');
      slow.sendText('42/feed,1["ping"]');
      await slow.until((m) => m === '43/feed,1["pong"]');
    },
    seen: (seq) => slow.until((m) => seqOf(m) === seq),
    pause: () => slow.pause(),
    bytes: () => slow.bytes,
    async resumeCollect(last, t) {
      slow.resume();
      const got = [];
      try {
        await slow.until((m) => {
          const s = seqOf(m);
          if (s !== null) got.push(s);
          return s === last;
        }, 20000);
      } catch (e) {
        if (!slow.closed) throw new Error(`${e.message}; slow client received ${got.length} messages, last ${got.at(-1)}`);
        t.diagnostic(`the server closed the slow client after it fell behind (received ${got.length} before that)`);
      }
      return got;
    },
    destroy: () => slow?.destroy(),
  };
}

function pollingSlow() {
  let sid;
  const q = () => `EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;
  const pending = [];
  let bytes = 0;
  // pull: one GET; answers pings; queues the packets
  const pull = async () => {
    const r = await eioGet(srv.port, q(), { ms: 10000 });
    if (r.status !== 200) return false;
    bytes += r.body.length;
    const pk = r.body.split(RS);
    if (pk.includes("2")) await eioPost(srv.port, q(), "3");
    pending.push(...pk);
    return true;
  };
  const until = async (pred, ms = 10000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      while (pending.length) if (pred(pending.shift())) return true;
      if (Date.now() > deadline) throw new Error("timed out polling");
      if (!(await pull())) return false;
    }
  };
  return {
    kind: "polling session that stops polling",
    async open() {
      ({ sid } = await handshake(srv.port));
      await eioPost(srv.port, q(), "40/feed,");
      await until((m) => m.startsWith("40/feed,{"));
      await eioPost(srv.port, q(), `42/feed,["subscribe",{"topic":"prices"}]${RS}42/feed,1["ping"]`);
      await until((m) => m === '43/feed,1["pong"]');
    },
    seen: (seq) => until((m) => seqOf(m) === seq),
    pause: () => {},
    bytes: () => bytes,
    async resumeCollect(last, t) {
      const got = [];
      const ok = await until((m) => {
        const s = seqOf(m);
        if (s !== null) got.push(s);
        return s === last;
      }, 20000);
      if (!ok) t.diagnostic(`the server closed the polling session after it fell behind (received ${got.length})`);
      return got;
    },
    destroy: () => {},
  };
}

for (const makeSlow of [rawWebsocketSlow, pollingSlow]) {
  const slow = makeSlow();
  it(`a ${slow.kind} costs bounded memory; a fast client gets all ${TOTAL} messages in order`, async (t) => {
    // fast subscriber
    const fast = await connected(client(`${srv.url}/feed`, MODES.websocket));
    let fastLast = 0, fastCount = 0, fastErr = null;
    let wake = () => {};
    fast.on("prices", (p) => {
      fastCount++;
      if (!fastErr && p.seq !== fastLast + 1) fastErr = `fast client got seq ${p.seq} after ${fastLast}`;
      fastLast = p.seq;
      wake();
    });
    const fastAt = (seq, ms = 30000) => withTimeout(new Promise((resolve) => {
      const check = () => (fastLast >= seq || fastErr ? resolve() : (wake = check));
      check();
    }), ms, `the fast client to reach seq ${seq} (at ${fastLast})`);
    fast.emit("subscribe", { topic: "prices" });
    assert.equal(await fast.timeout(5000).emitWithAck("ping"), "pong");

    try {
      await slow.open();
      // warm up (allocator pools, HTTP buffers), then take the baseline
      let seq = 0;
      const batch = () => Array.from({ length: BATCH }, () => ({
        namespace: "/feed", topic: "prices", payload: { seq: ++seq, pad: PAD },
      }));
      await publish(srv.port, batch());
      await fastAt(seq);
      await slow.seen(seq);
      slow.pause();
      const warm = seq;
      const baseline = rssKiB(srv.pid);
      let peak = baseline;

      // flood, keeping the fast client at most two batches behind
      while (seq < TOTAL + warm) {
        if (seq - warm >= 2 * BATCH) await fastAt(seq - BATCH);
        await publish(srv.port, batch());
        peak = Math.max(peak, rssKiB(srv.pid));
        if (fastErr) break;
      }
      await fastAt(seq);
      peak = Math.max(peak, rssKiB(srv.pid));
      t.diagnostic(`baseline RSS ${(baseline / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB, ` +
        `published ${seq - warm} x ~1 KiB, slow client read ${slow.bytes()} bytes before pausing`);

      assert.equal(fastErr, null);
      assert.equal(fastLast, seq);
      assert.equal(fastCount, seq, "the fast client got every message exactly once");
      assert.equal(fast.connected, true);
      assert.ok(peak - baseline < BOUND_MIB * 1024,
        `server RSS grew by ${((peak - baseline) / 1024).toFixed(1)} MiB (bound ${BOUND_MIB} MiB) while a client did not read`);

      // the slow client reads again: what it gets is in order and ends with the newest message
      const got = await slow.resumeCollect(seq, t);
      for (let i = 1; i < got.length; i++) {
        assert.ok(got[i] > got[i - 1], `slow client: seq ${got[i]} after ${got[i - 1]}`);
      }
      assert.ok(got.length < seq - warm, `the slow client cannot have been sent all ${seq - warm} messages (got ${got.length})`);
      t.diagnostic(`slow client received ${got.length} of ${seq - warm} flood messages after resuming`);
    } finally {
      slow.destroy();
      closeAll(fast);
    }
  });
}

it("the server still serves new clients afterwards", async () => {
  const s = await connected(client(`${srv.url}/feed`, MODES.websocket));
  try {
    assert.equal(await s.timeout(5000).emitWithAck("ping"), "pong");
    const r = await fetch(`${srv.url}/healthz`);
    assert.equal(r.status, 200);
  } finally { closeAll(s); }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
