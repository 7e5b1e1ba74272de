// delivery-crash.test.mjs - nothing accepted is lost silently (issue 13, point 4).
// 1. The spill gauges and counters match the files: sluice_spill_bytes is the size of the
//    segment files, sluice_spill_records the records in them not yet read back, and
//    streamfence_messages_spilled_total = those + sluice_spill_read_total; on a full tmpfs,
//    spilled_total counts only the records really written.
// 2. kill -9 in the middle of an AT_LEAST_ONCE + SPILL_TO_DISK feed, then restart: every
//    accepted message is either acked by its subscriber or counted in
//    sluice_messages_lost_total{reason="restart"} and logged; a process that stops cleanly
//    leaves nothing to count.
import { it, test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import zlib from "node:zlib";
import { readFileSync, mkdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { assertCleanExit, client, connected, closeAll, MODES, publish, tmpDir, sleep } from "./helpers.mjs";
import { startDelivery, metrics, mval, metric, RawSio, filesUnder, waitUntil, backUp } from "./delivery-helpers.mjs";

const SPILLED = "streamfence_messages_spilled_total";
const LOST = "sluice_messages_lost_total";
const segFiles = (dir) => filesUnder(dir).filter((f) => /seg-[^/]*\.spill$/.test(f));

// onDisk: bytes of the segment files under dir and their complete records with a good CRC;
// `unread`: those past the segment's read mark (header bytes 12..15).
function onDisk(dir) {
  let bytes = 0, records = 0, unread = 0;
  for (const f of segFiles(dir)) {
    const b = readFileSync(f);
    bytes += b.length;
    if (b.length < 16 || b.toString("latin1", 0, 8) !== "SLSPILL1") continue;
    const mark = b.readUInt32LE(12);
    for (let off = 16; off + 8 <= b.length;) {
      const len = b.readUInt32LE(off), crc = b.readUInt32LE(off + 4);
      if (off + 8 + len > b.length) break;
      if ((zlib.crc32(b.subarray(off + 8, off + 8 + len)) >>> 0) === crc) {
        records++;
        if (off >= mark) unread++;
      }
      off += 8 + len;
    }
  }
  return { bytes, records, unread };
}

// spillTo: a paused raw subscriber of ns/t that never reads (its connection backed up); `total` messages of `size`
// bytes published; resolves once the spilled count and the files stopped moving.
async function spillTo(srv, ns, total, size, fail = "spill to disk failed") {
  const c = await RawSio.connect(srv.port, ns);
  await c.subscribe("t");
  c.pause();
  // back the connection up first: from then on the lane stays full, so nothing is read back
  // from the disk and every record written is still in the files
  await backUp(srv.port, ns, "t", { size: 4000 });
  const pad = "s".repeat(size);
  for (let s = 1; s <= total; s += 20) {
    await publish(srv.port, Array.from({ length: Math.min(20, total - s + 1) }, (_, i) => ({ namespace: ns, topic: "t", payload: { seq: s + i, pad } })));
  }
  let last = "";
  await waitUntil(async () => {
    const m = await metrics(srv.port);
    const L = { namespace: ns, topic: "t" };
    const now = JSON.stringify([mval(m, SPILLED, L), mval(m, "streamfence_queue_overflow_total", { ...L, reason: fail }), mval(m, "sluice_spill_bytes", L)]);
    const stable = now === last;
    last = now;
    return stable;
  }, 10000, "the spill to settle", 200);
  return c;
}

const spillMetrics = (m, L) => ({
  spilled: mval(m, SPILLED, L), readBack: mval(m, "sluice_spill_read_total", L),
  records: mval(m, "sluice_spill_records", L), bytes: mval(m, "sluice_spill_bytes", L),
});

// snapshot: the metrics and the files at one moment: a read job may still move records from
// the disk to the lane (the connection takes a little now and then), so the files are read
// between two identical readings of the spill metrics.
async function snapshot(port, L, dir) {
  for (let i = 0; ; i++) {
    const m = await metrics(port);
    const disk = onDisk(dir);
    const again = await metrics(port);
    if (JSON.stringify(spillMetrics(m, L)) === JSON.stringify(spillMetrics(again, L)) || i >= 50) return { m, disk };
    await sleep(50);
  }
}

// checkFiles: the gauges are what the files hold, and every record counted as spilled was
// written: it is in the files still unread, or it was read back from them.
function checkFiles(m, L, disk) {
  const g = spillMetrics(m, L);
  assert.equal(g.bytes, disk.bytes, "sluice_spill_bytes vs the size of the files");
  assert.equal(g.records, disk.unread, "sluice_spill_records vs the unread records in the files");
  assert.equal(g.spilled, g.readBack + disk.unread, "spilled_total vs records read back + unread in the files");
  assert.equal(mval(m, "sluice_spill_corrupt_records_total", L), 0);
}

const spillNs = (p, extra) => ({
  path: p, topics: ["t"], deliveryMode: "BEST_EFFORT", overflowAction: "SPILL_TO_DISK",
  // a lane of 50 refills from the disk only once 25 have left it: with the connection backed
  // up, nothing is read back, so every record written is still in the files
  maxQueuedMessagesPerClient: 50, maxQueuedBytesPerClient: 1 << 20, ...extra,
});

describe("spill gauges against the files", () => {
  const root = path.join(tmpDir("sluice-gauge-"), "spill");
  let srv;
  before(async () => { srv = await startDelivery([spillNs("/g")], { spillRootPath: root }); });
  after(async () => { await srv?.stop(); });

  it("sluice_spill_bytes = the size of the segment files; spilled_total = the records in them", async (t) => {
    const c = await spillTo(srv, "/g", 1500, 200);
    try {
      const L = { namespace: "/g", topic: "t" };
      const { m, disk } = await snapshot(srv.port, L, root);
      t.diagnostic(JSON.stringify({ disk, ...spillMetrics(m, L) }));
      // a sanity bound only (how much the paused client's socket still took before the lane
      // filled depends on the machine's load); the exact check is checkFiles below
      assert.ok(disk.unread > 500, `a good part of the messages on disk (${disk.unread})`);
      checkFiles(m, L, disk);
    } finally { c.destroy(); }
  });
});

describe("a tmpfs that fills up", () => {
  let srv, mnt, mounted = false;
  before(async () => {
    mnt = path.join(tmpDir("sluice-full-"), "mnt");
    mkdirSync(mnt);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt], { stdio: "pipe" });
      mounted = true;
    } catch { return; }
    srv = await startDelivery([spillNs("/f")], { spillRootPath: path.join(mnt, "spill") });
  });
  after(async () => {
    await srv?.stop();
    if (mounted) { try { execFileSync("umount", ["-l", mnt], { stdio: "pipe" }); } catch { /* */ } }
  });

  it("spilled_total = the records written; the rest counted as failed and logged", async (t) => {
    if (!mounted) return t.skip("cannot mount a tmpfs here: variant skipped");
    const c = await spillTo(srv, "/f", 600, 1000);
    try {
      const L = { namespace: "/f", topic: "t" };
      const { m, disk } = await snapshot(srv.port, L, path.join(mnt, "spill"));
      const failed = mval(m, "streamfence_queue_overflow_total", { ...L, reason: "spill to disk failed" });
      t.diagnostic(JSON.stringify({ disk, ...spillMetrics(m, L), failed }));
      assert.ok(failed > 0, "the disk filled up");
      assert.equal(mval(m, LOST, { ...L, reason: "spill failed" }), failed, "what failed to spill is counted lost");
      checkFiles(m, L, disk);
      assert.match(srv.stderr(), /not spilled|lost/);
    } finally { c.destroy(); }
  });
});

// A feed to two subscribers of an AT_LEAST_ONCE + SPILL_TO_DISK namespace: `acker` acks
// everything it gets, `stalled` never reads (its backlog goes to disk).
const ALO = [{
  path: "/alo", topics: ["t"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "SPILL_TO_DISK",
  maxQueuedMessagesPerClient: 20, maxQueuedBytesPerClient: 1 << 20, maxInFlight: 5,
  ackTimeoutMs: 60000, maxRetries: 1,
}];
const L = { namespace: "/alo", topic: "t" };

test("kill -9 mid-feed (AT_LEAST_ONCE + SPILL_TO_DISK): every accepted message is acked or counted lost at restart", async (t) => {
  const root = path.join(tmpDir("sluice-crash-"), "spill");
  const one = await startDelivery(ALO, { spillRootPath: root });
  const acker = await connected(client(`${one.url}/alo`, { ...MODES.websocket, reconnection: false }));
  const acked = new Set();
  acker.on("t", (p, meta) => { acker.emit("ack", { topic: "t", messageId: meta.messageId }); acked.add(p.seq); });
  assert.deepEqual(await acker.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
  const stalled = await RawSio.connect(one.port, "/alo");
  await stalled.subscribe("t");
  stalled.pause();

  // publish 10,000 in batches of 50, one request at a time; kill -9 once 2,500 are accepted
  let accepted = 0, seq = 0;
  const pad = "k".repeat(100);
  try {
    while (seq < 10000) {
      const batch = Array.from({ length: 50 }, () => ({ namespace: "/alo", topic: "t", payload: { seq: ++seq, pad } }));
      const ids = await publish(one.port, batch);
      assert.equal(ids.length, 50);
      accepted += ids.length;
      if (accepted === 2500) {
        // the spill writes run on libuv's threadpool: on a loaded machine none may have
        // reached the disk yet when the 200 comes back; the kill must find some there
        const until = Date.now() + 10000;
        while (onDisk(root).records === 0 && Date.now() < until) await sleep(20);
        one.proc.kill("SIGKILL");
      }
    }
  } catch { /* the request in flight at the kill */ }
  await one.stop();
  closeAll(acker);
  stalled.destroy();
  const spilledFiles = onDisk(root);
  assert.ok(spilledFiles.records > 0, "spill files survive kill -9");

  const two = await startDelivery(ALO, { spillRootPath: root });
  try {
    const lost = await metric(two.port, LOST, { ...L, reason: "restart" });
    const received = acked.size;
    const figures = { published: seq, accepted, ackerReceivedAndAcked: received, stalledReceived: 0, countedLost: lost, spilledRecordsOnDisk: spilledFiles.records, notReadBack: spilledFiles.unread };
    t.diagnostic(JSON.stringify(figures));
    // per subscriber: accepted - acked by the server = held at the kill. The acker's acks
    // in flight at the kill (at most maxInFlight) and the batch whose 200 never came back
    // are the only slack.
    const floor = (accepted - received) + accepted;
    assert.ok(lost >= floor, `counted lost ${lost} < accepted-but-unacked ${floor}: silent loss`);
    assert.ok(lost <= floor + 5 + 2 * 50, `counted lost ${lost} is more than could have been held (${floor} + slack)`);
    assert.ok(lost >= spilledFiles.unread, "the spilled records not yet read back are a part of it");
    assert.match(two.stderr(), new RegExp(`holding ${lost} undelivered message\\(s\\) for namespace /alo topic t`));
    assert.match(two.stderr(), /spilled message\(s\) of a previous process/);
    assert.deepEqual(segFiles(root), [], "orphans removed after being counted");
  } finally { assertCleanExit(await two.stop()); }

  // a clean stop (two) held nothing: the next start counts nothing
  const three = await startDelivery(ALO, { spillRootPath: root });
  try {
    assert.equal(await metric(three.port, LOST, { ...L, reason: "restart" }), 0);
    assert.doesNotMatch(three.stderr(), /previous process/);
  } finally { assertCleanExit(await three.stop()); }
});

test("kill -9 after everything was acked: nothing is counted lost", async () => {
  const root = path.join(tmpDir("sluice-crash0-"), "spill");
  const one = await startDelivery(ALO, { spillRootPath: root });
  const s = await connected(client(`${one.url}/alo`, { ...MODES.websocket, reconnection: false }));
  let got = 0;
  s.on("t", (p, meta) => { s.emit("ack", { topic: "t", messageId: meta.messageId }); got++; });
  assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
  for (let i = 0; i < 10; i++) {
    await publish(one.port, Array.from({ length: 50 }, (_, k) => ({ namespace: "/alo", topic: "t", payload: { seq: i * 50 + k } })));
  }
  await waitUntil(async () => got >= 500 && (await metric(one.port, "sluice_in_flight_messages", L)) === 0 &&
    (await metric(one.port, "sluice_queued_messages", L)) === 0, 10000, "all acked");
  await sleep(100);
  one.proc.kill("SIGKILL");
  await one.stop();
  closeAll(s);
  const two = await startDelivery(ALO, { spillRootPath: root });
  try {
    assert.equal(await metric(two.port, LOST, { ...L, reason: "restart" }), 0);
    assert.doesNotMatch(two.stderr(), /previous process/);
  } finally { assertCleanExit(await two.stop()); }
});

test("a graceful stop with held messages says how many it drops; the next start counts nothing", async () => {
  const root = path.join(tmpDir("sluice-stop-"), "spill");
  const cfg = [spillNs("/s")];
  const one = await startDelivery(cfg, { spillRootPath: root });
  const c = await spillTo(one, "/s", 1500, 200);
  let held;
  try {
    const m = await metrics(one.port);
    const L = { namespace: "/s", topic: "t" };
    held = mval(m, "sluice_queued_messages", L) + mval(m, "sluice_spill_records", L);
    assert.ok(held > 0);
    assertCleanExit(await one.stop());
  } finally { c.destroy(); }
  // (the connection may still have taken a few between the metrics and the stop)
  const said = /stopping: namespace \/s topic t: (\d+) undelivered message\(s\) held for 1 subscriber\(s\) are dropped/.exec(one.stderr());
  assert.ok(said, one.stderr());
  assert.ok(Number(said[1]) > 0 && Number(said[1]) <= held, `${said[1]} dropped, ${held} held before`);
  const two = await startDelivery(cfg, { spillRootPath: root });
  try {
    assert.equal(await metric(two.port, LOST, { namespace: "/s", topic: "t", reason: "restart" }), 0);
    assert.doesNotMatch(two.stderr(), /previous process/);
  } finally { assertCleanExit(await two.stop()); }
});
