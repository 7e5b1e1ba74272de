// delivery-spill.test.mjs - SPILL_TO_DISK (DESIGN.md §4, STREAMFENCE.md §1.8, bugs B3-B5):
// thousands of messages to a paused client arrive, all and in order, after it resumes, also
// while new messages keep coming (B3); segment files exist under
// spillRootPath/<ns>/<socket id>/<topic>/ while paused and are gone (directories included)
// after disconnect and after a graceful stop (B5); a corrupt record is skipped and a
// corrupt segment survived, without a busy loop (B4); AT_LEAST_ONCE + SPILL_TO_DISK keeps
// FIFO; after kill -9, a restart sweeps the orphaned files (B5).
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { readFileSync, openSync, writeSync, closeSync, existsSync } from "node:fs";
import {
  assertCleanExit, client, connected, closeAll, MODES, Inbox, publish, tmpDir, sleep,
} from "./helpers.mjs";
import {
  startDelivery, metrics, mval, metric, RawSio, filesUnder, dirsUnder, waitUntil, cpuTicks,
  increasingViolation, waitMetric,
} from "./delivery-helpers.mjs";

const ROOT = path.join(tmpDir("sluice-spill-"), "spill");
const spillNs = (p, extra) => ({
  path: p, topics: ["t"], deliveryMode: "BEST_EFFORT", overflowAction: "SPILL_TO_DISK",
  maxQueuedMessagesPerClient: 10, maxQueuedBytesPerClient: 65536, ...extra,
});
const NAMESPACES = [
  spillNs("/spill"),
  spillNs("/flip"),
  spillNs("/smash"),
  spillNs("/stop"),
  spillNs("/a/b"),
  spillNs("/gbytes"),
  spillNs("/unsub"),
  { path: "/aloexh", topics: ["t"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "SPILL_TO_DISK",
    maxQueuedMessagesPerClient: 1, maxInFlight: 1, ackTimeoutMs: 150, maxRetries: 1 },
  { path: "/alospill", topics: ["t"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "SPILL_TO_DISK",
    maxQueuedMessagesPerClient: 2, maxInFlight: 1, ackTimeoutMs: 5000, maxRetries: 1 },
];

let srv;
before(async () => { srv = await startDelivery(NAMESPACES, { spillRootPath: ROOT }); });
after(async () => { await srv?.stop(); });

const PAD = "p".repeat(100);
const SPILLED = "streamfence_messages_spilled_total";
const OVERFLOW = "streamfence_queue_overflow_total";
const segFiles = (dir) => filesUnder(dir).filter((f) => /seg-[^/]*\.spill$/.test(f));
const laneDir = (nsSegs, sid, topic = "t") => path.join(ROOT, ...nsSegs, sid, topic);

// publishSeqs: seq from..to on ns/t, `batch` per request.
async function publishSeqs(ns, from, to, batch = 200) {
  for (let s = from; s <= to; s += batch) {
    const n = Math.min(batch, to - s + 1);
    await publish(srv.port, Array.from({ length: n }, (_, i) => ({ namespace: ns, topic: "t", payload: { seq: s + i, pad: PAD } })));
  }
}

// pausedSpiller: a paused raw client subscribed to ns/t that has `total` messages waiting for
// it, most of them on disk (every spilled write completed).
async function pausedSpiller(ns, total) {
  const c = await RawSio.connect(srv.port, ns);
  await c.subscribe("t");
  c.pause();
  const before = await metric(srv.port, SPILLED, { namespace: ns, topic: "t" });
  await publishSeqs(ns, 1, total);
  // writes complete on the thread pool: wait until the count stops moving
  let last = -1;
  await waitUntil(async () => {
    const v = await metric(srv.port, SPILLED, { namespace: ns, topic: "t" });
    const stable = v === last && v > before;
    last = v;
    return stable;
  }, 10000, `${ns}: spilled messages to settle`, 100);
  return { c, spilled: last - before };
}

const seqsOf = (c) => c.of("t").map((d) => d.payload.seq);

it("B3: 3000 messages to a paused client (most spilled) arrive all and in order, also while more keep coming", async (t) => {
  const { c, spilled } = await pausedSpiller("/spill", 3000);
  try {
    t.diagnostic(`${spilled} of 3000 messages spilled`);
    assert.ok(spilled >= 1000, `expected most messages on disk, spilled ${spilled}`);
    const m = await metrics(srv.port);
    assert.equal(mval(m, OVERFLOW, { namespace: "/spill", topic: "t", reason: "spilled to disk" }), spilled);
    assert.ok(mval(m, "sluice_queued_messages", { namespace: "/spill", topic: "t" }) <= 10, "memory holds at most maxQueued");

    // B5 (part): the files are where StreamFenceJs put its spill: root/<ns segments>/<sid>/<topic>
    const dir = laneDir(["spill"], c.sid);
    assert.ok(segFiles(dir).length >= 1, `segment files under ${dir}: ${JSON.stringify(filesUnder(ROOT))}`);

    c.resume();
    // keep publishing while the backlog drains: nothing may overtake the spilled messages,
    // and refilling from disk never puts more than maxQueued in memory
    let maxQueued = 0;
    for (let s = 3001; s <= 3500; s += 50) {
      await publishSeqs("/spill", s, s + 49, 50);
      maxQueued = Math.max(maxQueued, await metric(srv.port, "sluice_queued_messages", { namespace: "/spill", topic: "t" }));
    }
    assert.ok(maxQueued <= 10, `a lane of 10 held ${maxQueued} messages while refilling`);
    await c.waitFor(() => seqsOf(c).includes(3500) || seqsOf(c).length >= 3500, 30000,
      `seq 3500 (got ${c.of("t").length})`);
    const got = seqsOf(c);
    assert.equal(increasingViolation(got), null, "order");
    assert.equal(got.length, 3500, "every message exactly once");
    const after = await metrics(srv.port);
    assert.equal(mval(after, "sluice_queued_messages", { namespace: "/spill", topic: "t" }), 0);

    // B5: gone when the client goes, directories included
    c.destroy();
    await waitUntil(() => !existsSync(path.join(ROOT, "spill", c.sid)), 5000,
      `${path.join(ROOT, "spill", c.sid)} to be removed (left: ${JSON.stringify(filesUnder(ROOT))})`);
  } finally { c.destroy(); }
});

it("B5: files of a paused client are removed when it disconnects while they are still full", async () => {
  const { c } = await pausedSpiller("/a/b", 1500);
  const dir = laneDir(["a", "b"], c.sid);
  assert.ok(segFiles(dir).length >= 1, `segment files under ${dir}`);
  c.destroy();
  await waitUntil(() => !existsSync(path.join(ROOT, "a", "b", c.sid)), 5000,
    `the lane's directory to be removed (left: ${JSON.stringify([...filesUnder(ROOT), ...dirsUnder(ROOT)])})`);
  assert.deepEqual(segFiles(path.join(ROOT, "a")), []);
});

it("B5: unsubscribing removes the lane's spill files at once (the client stays connected)", async () => {
  const { c } = await pausedSpiller("/unsub", 1500);
  try {
    const dir = laneDir(["unsub"], c.sid);
    assert.ok(segFiles(dir).length >= 1, "segment files while paused");
    c.emit("unsubscribe", { topic: "t" }); // writing works while we do not read
    await waitUntil(() => !existsSync(dir), 5000, `${dir} to be removed after unsubscribe`);
    assert.equal(await metric(srv.port, "sluice_queued_messages", { namespace: "/unsub", topic: "t" }), 0);
  } finally { c.destroy(); }
});

it("B4: a record whose bytes were changed on disk is skipped; every other message arrives in order", async (t) => {
  const { c } = await pausedSpiller("/flip", 2000);
  try {
    const [seg] = segFiles(laneDir(["flip"], c.sid));
    assert.ok(seg, "a segment file");
    const buf = readFileSync(seg);
    const found = [...buf.toString("latin1").matchAll(/"seq":(\d+),/g)].map((m) => ({ seq: Number(m[1]), at: m.index }));
    assert.ok(found.length > 100, `payloads are stored as they are sent (found ${found.length} in ${seg})`);
    const victim = found[Math.floor(found.length / 2)];
    // change one digit of the victim's seq (the record's CRC no longer matches)
    const at = victim.at + '"seq":'.length;
    const digit = buf[at];
    const fd = openSync(seg, "r+");
    writeSync(fd, Buffer.from([digit === 0x39 ? 0x31 : digit + 1]), 0, 1, at);
    closeSync(fd);
    t.diagnostic(`corrupted the record of seq ${victim.seq} in ${path.basename(seg)}`);

    c.resume();
    await c.waitFor(() => seqsOf(c).includes(2000), 20000, `seq 2000 (got ${c.of("t").length})`);
    await publishSeqs("/flip", 2001, 2010);
    await c.waitFor(() => seqsOf(c).includes(2010), 5000, "seq 2010");
    const got = seqsOf(c);
    assert.equal(increasingViolation(got), null, "order");
    const want = Array.from({ length: 2010 }, (_, i) => i + 1).filter((s) => s !== victim.seq);
    assert.deepEqual(got, want, `all but seq ${victim.seq}`);
    assert.match(srv.stderr(), /corrupt/i, "the skipped record is logged");
  } finally { c.destroy(); }
});

it("the corrupt record is counted: sluice_spill_corrupt_records_total", async () => {
  const m = await metrics(srv.port);
  assert.equal(mval(m, "sluice_spill_corrupt_records_total", { namespace: "/flip", topic: "t" }), 1);
});

it("B4: garbage written over the middle of a segment: server survives, later messages arrive, no busy loop", async (t) => {
  const { c } = await pausedSpiller("/smash", 2000);
  try {
    const [seg] = segFiles(laneDir(["smash"], c.sid));
    assert.ok(seg, "a segment file");
    const size = readFileSync(seg).length;
    const fd = openSync(seg, "r+");
    writeSync(fd, Buffer.alloc(256, 0xff), 0, 256, Math.floor(size / 2));
    closeSync(fd);
    c.resume();
    // probes: once one arrives, the backlog is gone (whatever of it was readable arrived first)
    let probe = 0;
    await waitUntil(async () => {
      await publish(srv.port, { namespace: "/smash", topic: "t", payload: { seq: 100000 + ++probe } });
      return c.of("t").some((d) => d.payload.seq > 100000);
    }, 20000, "a probe published after the corruption to arrive", 50);
    await publishSeqs("/smash", 200001, 200020);
    await c.waitFor(() => seqsOf(c).includes(200020), 5000, "messages published afterwards");
    const got = seqsOf(c);
    assert.equal(increasingViolation(got), null, "order");
    assert.ok(got.filter((s) => s <= 2000).length >= 100, "the records before the damage arrived");
    t.diagnostic(`received ${got.filter((s) => s <= 2000).length} of 2000 after smashing 256 bytes at ${Math.floor(size / 2)} of ${size}`);
    // no busy loop: the server is idle now that the lane is drained
    const t0 = cpuTicks(srv.pid);
    await sleep(1000);
    const used = cpuTicks(srv.pid) - t0;
    assert.ok(used <= 25, `server used ${used} clock ticks of CPU in 1 s while idle (busy loop?)`);
    assert.equal(srv.alive(), true);
    assert.match(srv.stderr(), /corrupt/i, "the corruption is logged");
    assert.ok(await metric(srv.port, "sluice_spill_corrupt_records_total", { namespace: "/smash", topic: "t" }) >= 1);
  } finally { c.destroy(); }
});

it("a spill-bytes gauge shows the bytes on disk while paused and 0 once drained", async () => {
  const { c } = await pausedSpiller("/gbytes", 1500);
  try {
    const L = { namespace: "/gbytes", topic: "t" };
    const shown = await metric(srv.port, "sluice_spill_bytes", L);
    const onDisk = segFiles(laneDir(["gbytes"], c.sid)).reduce((a, f) => a + readFileSync(f).length, 0);
    assert.ok(shown > 0 && shown <= onDisk, `sluice_spill_bytes ${shown}, files ${onDisk} bytes`);
    c.resume();
    await c.waitFor(() => seqsOf(c).includes(1500), 20000, "seq 1500");
    await waitMetric(srv.port, "sluice_spill_bytes", L, (v) => v === 0, 5000);
  } finally { c.destroy(); }
});

it("AT_LEAST_ONCE + SPILL_TO_DISK: a client acking as it goes gets every message once, in order", async () => {
  const s = await connected(client(`${srv.url}/alospill`, MODES.websocket));
  try {
    const box = new Inbox(s, "t");
    s.on("t", (p, meta) => s.emit("ack", { topic: meta.topic, messageId: meta.messageId }));
    assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
    const ids = await publish(srv.port, Array.from({ length: 60 }, (_, i) => ({ namespace: "/alospill", topic: "t", payload: { seq: i + 1 } })));
    await box.count(60, 15000);
    assert.deepEqual(box.items.map((a) => a[0].seq), Array.from({ length: 60 }, (_, i) => i + 1));
    assert.deepEqual(box.items.map((a) => a[1].messageId), ids);
    for (const a of box.items) assert.equal(a[1].ackRequired, true);
    const m = await metrics(srv.port);
    assert.ok(mval(m, SPILLED, { namespace: "/alospill", topic: "t" }) >= 50, "most went through the disk");
    assert.equal(mval(m, "streamfence_retries_total", { namespace: "/alospill", topic: "t" }), 0);
  } finally { closeAll(s); }
});

it("AT_LEAST_ONCE + SPILL_TO_DISK: an unacked message is retried, exhausted, then the spilled ones follow in order", async () => {
  const s = await connected(client(`${srv.url}/aloexh`, MODES.websocket));
  try {
    const box = new Inbox(s, "t");
    assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
    const ids = await publish(srv.port, [1, 2, 3].map((n) => ({ namespace: "/aloexh", topic: "t", payload: n })));
    // 1 is never acked: sent, re-sent once, exhausted; 2 and 3 come from the disk and are acked
    s.on("t", (p, meta) => { if (p !== 1) s.emit("ack", { topic: "t", messageId: meta.messageId }); });
    await box.count(4, 5000);
    assert.deepEqual(box.items.map((a) => a[0]), [1, 1, 2, 3]);
    assert.deepEqual(box.items.map((a) => a[1].messageId), [ids[0], ids[0], ids[1], ids[2]]);
    const m = await metrics(srv.port);
    assert.equal(mval(m, "streamfence_retries_exhausted_total", { namespace: "/aloexh", topic: "t" }), 1);
    assert.equal(mval(m, SPILLED, { namespace: "/aloexh", topic: "t" }), 2);
  } finally { closeAll(s); }
});

test("a graceful stop with spilled messages removes the spill files; shuts down cleanly", async () => {
  const { c } = await pausedSpiller("/stop", 1500);
  assert.ok(segFiles(ROOT).length >= 1);
  try {
    assertCleanExit(await srv.stop());
    assert.deepEqual(segFiles(ROOT), [], "spill files left after SIGTERM");
    assert.deepEqual(dirsUnder(ROOT), [], "spill directories left after SIGTERM");
  } finally { c.destroy(); }
});

test("B5: kill -9 with spill files on disk, then restart: the orphans are swept at startup", async () => {
  const root = path.join(tmpDir("sluice-orphan-"), "spill");
  const cfg = [spillNs("/o")];
  const one = await startDelivery(cfg, { spillRootPath: root });
  const c = await RawSio.connect(one.port, "/o");
  try {
    await c.subscribe("t");
    c.pause();
    const pad = "o".repeat(100);
    for (let s = 1; s <= 1500; s += 250) {
      await publish(one.port, Array.from({ length: 250 }, (_, i) => ({ namespace: "/o", topic: "t", payload: { seq: s + i, pad } })));
    }
    await waitMetric(one.port, SPILLED, { namespace: "/o", topic: "t" }, (v) => v > 0, 5000);
    await waitUntil(() => segFiles(root).length > 0, 5000, "segment files");
    one.proc.kill("SIGKILL");
    await one.stop();
  } finally { c.destroy(); }
  const left = segFiles(root);
  assert.ok(left.length > 0, "files survive kill -9");
  const two = await startDelivery(cfg, { spillRootPath: root });
  try {
    assert.deepEqual(segFiles(root), [], "orphaned segment files after the restart");
    assert.deepEqual(dirsUnder(root), [], "orphaned directories after the restart");
    assert.match(two.stderr(), /orphan/i, "the sweep is logged");
    const r = await fetch(`${two.url}/healthz`);
    assert.equal(r.status, 200, "and then it serves");
  } finally { assertCleanExit(await two.stop()); }
});
