// delivery-memory.test.mjs - memory is bounded by configuration (DESIGN.md §2 and §4, bug B6):
// two paused clients (three lanes: DROP_OLDEST x2 and AT_LEAST_ONCE REJECT_NEW) get 100x
// their lane caps published to them. The server's RSS must stay within
//   baseline + lanes x maxQueuedBytesPerClient x 2 (per-message overhead) + connections x
//   socketHighWaterBytes + a fixed allowance,
// and the queued-bytes gauge never exceeds a lane's cap.
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { assertCleanExit, publish, rssKiB, ASAN } from "./helpers.mjs";
import { startDelivery, metrics, mval, RawSio } from "./delivery-helpers.mjs";

const PAYLOAD = 1024;              // bytes of JSON per message (about)
const CAP_MSGS = 256;
const CAP_BYTES = 256 * 1024;
const HWM = 65536;
const LANES = [["/m", "a"], ["/m", "b"], ["/r", "a"]];
const PER_LANE = 100 * CAP_MSGS;   // 100x the caps (count and bytes are both ~256 KiB)
const BATCH = 256;
const ALLOWANCE_MIB = ASAN ? 256 : 16;

const NAMESPACES = [
  { path: "/m", topics: ["a", "b"], deliveryMode: "BEST_EFFORT", overflowAction: "DROP_OLDEST",
    maxQueuedMessagesPerClient: CAP_MSGS, maxQueuedBytesPerClient: CAP_BYTES },
  { path: "/r", topics: ["a"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW",
    maxQueuedMessagesPerClient: CAP_MSGS, maxQueuedBytesPerClient: CAP_BYTES,
    maxInFlight: 16, ackTimeoutMs: 60000, maxRetries: 1 },
];

let srv;
before(async () => { srv = await startDelivery(NAMESPACES, { socketHighWaterBytes: HWM }); });
after(async () => { await srv?.stop(); });

it(`paused clients with ${PER_LANE} x ~1 KiB messages per lane (100x the caps): RSS stays within the caps-derived bound`, async (t) => {
  const m = await RawSio.connect(srv.port, "/m");
  const r = await RawSio.connect(srv.port, "/r");
  try {
    await m.subscribe("a");
    await m.subscribe("b");
    await r.subscribe("a");
    let seq = 0;
    const pad = "x".repeat(PAYLOAD - 30);
    const batch = (ns, topic) => Array.from({ length: BATCH }, () => ({ namespace: ns, topic, payload: { seq: ++seq, pad } }));

    // warm up while the clients read (allocator pools, HTTP buffers), then take the baseline
    const last = {};
    for (let i = 0; i < 8; i++) for (const [ns, tp] of LANES) { await publish(srv.port, batch(ns, tp)); last[ns + tp] = seq; }
    // DROP_OLDEST keeps the newest: the last of each topic arrives
    await m.waitPayload("a", (p) => p.seq === last["/ma"], 10000);
    await m.waitPayload("b", (p) => p.seq === last["/mb"], 10000);
    await r.waitFor(() => r.of("a").length >= 16, 10000, "warm-up deliveries on /r");
    m.pause();
    r.pause();
    const baseline = rssKiB(srv.pid);
    let peak = baseline;
    let maxQueuedBytes = 0;

    for (let sent = 0; sent < PER_LANE; sent += BATCH) {
      for (const [ns, tp] of LANES) await publish(srv.port, batch(ns, tp));
      peak = Math.max(peak, rssKiB(srv.pid));
      if ((sent / BATCH) % 10 === 0) {
        const mm = await metrics(srv.port);
        for (const [ns, tp] of LANES) maxQueuedBytes = Math.max(maxQueuedBytes, mval(mm, "sluice_queued_bytes", { namespace: ns, topic: tp }));
      }
    }
    const bound = LANES.length * CAP_BYTES * 2 + 2 * HWM + ALLOWANCE_MIB * 1024 * 1024;
    const grew = (peak - baseline) * 1024;
    t.diagnostic(`baseline ${(baseline / 1024).toFixed(1)} MiB, peak ${(peak / 1024).toFixed(1)} MiB, growth ` +
      `${(grew / 1048576).toFixed(1)} MiB, bound ${(bound / 1048576).toFixed(1)} MiB, published ` +
      `${((LANES.length * PER_LANE * PAYLOAD) / 1048576).toFixed(0)} MiB`);
    assert.ok(grew <= bound, `RSS grew by ${(grew / 1048576).toFixed(1)} MiB; bound ${(bound / 1048576).toFixed(1)} MiB`);
    assert.ok(maxQueuedBytes <= CAP_BYTES, `a lane held ${maxQueuedBytes} bytes (cap ${CAP_BYTES})`);
    const mm = await metrics(srv.port);
    assert.ok(mval(mm, "streamfence_messages_dropped_total", { namespace: "/m" }) > PER_LANE, "DROP_OLDEST dropped");
    assert.ok(mval(mm, "streamfence_queue_overflow_total", { namespace: "/r", reason: "queue full with REJECT_NEW" }) > PER_LANE / 2,
      "AT_LEAST_ONCE rejected");
  } finally { m.destroy(); r.destroy(); }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
