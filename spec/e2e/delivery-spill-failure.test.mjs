// delivery-spill-failure.test.mjs - SPILL_TO_DISK when the disk refuses (DESIGN.md §4, bug
// B5's "a write failure loses the message silently after metrics counted it"): the lane falls
// back to REJECT_NEW with streamfence_queue_overflow_total{reason="spill to disk failed"} and a
// log line, a failed message is never counted as spilled, every message that was not counted
// as failed reaches the client (in order), and the server keeps serving other clients.
// Two ways to fail: spillRootPath below a regular file (ENOTDIR on every write) and a 64 KiB
// tmpfs that fills up (ENOSPC after some writes succeeded; skipped when mount is not allowed).
import { it, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import { writeFileSync, mkdirSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { assertCleanExit, client, connected, closeAll, MODES, Inbox, publish, tmpDir } from "./helpers.mjs";
import { startDelivery, metrics, mval, RawSio, waitUntil, increasingViolation } from "./delivery-helpers.mjs";

const NS = [{
  path: "/s", topics: ["t"], deliveryMode: "BEST_EFFORT", overflowAction: "SPILL_TO_DISK",
  maxQueuedMessagesPerClient: 5, maxQueuedBytesPerClient: 65536,
}];
const SPILLED = "streamfence_messages_spilled_total";
const OVERFLOW = "streamfence_queue_overflow_total";
const L = { namespace: "/s", topic: "t" };

// run: a paused raw client and a reading socket.io client on /s/t; `total` messages of
// `size` bytes published in small batches; the paused client resumes; returns the counts.
async function run(srv, total, size) {
  const fast = await connected(client(`${srv.url}/s`, MODES.websocket));
  const fbox = new Inbox(fast, "t");
  assert.deepEqual(await fast.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
  const c = await RawSio.connect(srv.port, "/s");
  try {
    await c.subscribe("t");
    c.pause();
    const pad = "q".repeat(size);
    // batches of 5 (the lane's size): a client that reads never overflows
    for (let s = 1; s <= total; s += 5) {
      await publish(srv.port, Array.from({ length: Math.min(5, total - s + 1) }, (_, i) => ({ namespace: "/s", topic: "t", payload: { seq: s + i, pad } })));
    }
    // the reading client is not affected
    await fbox.count(total, 15000);
    assert.deepEqual(fbox.items.map((a) => a[0].seq), Array.from({ length: total }, (_, i) => i + 1));
    // every message is accounted for once its write finished (ok or failed): wait for that
    let m;
    await waitUntil(async () => {
      m = await metrics(srv.port);
      return mval(m, SPILLED, L) + mval(m, OVERFLOW, { ...L, reason: "spill to disk failed" }) > 0;
    }, 10000, "a spill outcome");
    c.resume();
    // drain: once a probe published now arrives, everything before it was handled
    let probe = 0;
    await waitUntil(async () => {
      await publish(srv.port, { namespace: "/s", topic: "t", payload: { seq: 1e6 + ++probe } });
      return c.of("t").some((d) => d.payload.seq > 1e6);
    }, 20000, "the paused client to catch up", 100);
    m = await metrics(srv.port);
    const all = c.of("t").map((d) => d.payload.seq);
    return {
      got: all.filter((s) => s <= total),
      probes: probe, // probes go through the same lane: some may have failed too
      probesGot: all.filter((s) => s > 1e6).length,
      spilled: mval(m, SPILLED, L),
      spilledReason: mval(m, OVERFLOW, { ...L, reason: "spilled to disk" }),
      failed: mval(m, OVERFLOW, { ...L, reason: "spill to disk failed" }),
      rejected: mval(m, OVERFLOW, { ...L, reason: "queue full with REJECT_NEW" }),
    };
  } finally { c.destroy(); closeAll(fast); }
}

function checkAccounting(r, total) {
  assert.equal(increasingViolation(r.got), null, "order");
  assert.ok(r.failed > 0, `writes failed but "spill to disk failed" is ${r.failed}`);
  assert.equal(r.spilledReason, r.spilled, 'overflow{reason="spilled to disk"} = messages_spilled');
  // nothing is lost silently: what was not counted as failed (or rejected) was delivered
  assert.equal(r.got.length + r.probesGot, total + r.probes - r.failed - r.rejected,
    `delivered ${r.got.length} of ${total} and ${r.probesGot} of ${r.probes} probes: failed ${r.failed}, ` +
    `rejected ${r.rejected}, spilled ${r.spilled}`);
}

describe("spillRootPath below a regular file (ENOTDIR)", () => {
  let srv;
  before(async () => {
    const dir = tmpDir("sluice-enotdir-");
    writeFileSync(path.join(dir, "afile"), "not a directory\n");
    srv = await startDelivery(NS, { spillRootPath: path.join(dir, "afile", "spill") });
  });
  after(async () => { await srv?.stop(); });

  it('falls back to REJECT_NEW: "spill to disk failed", never counted as spilled, logged; server keeps serving', async (t) => {
    const r = await run(srv, 1500, 100);
    t.diagnostic(JSON.stringify({ ...r, got: r.got.length }));
    assert.equal(r.spilled, 0, "nothing can have been spilled");
    checkAccounting(r, 1500);
    assert.match(srv.stderr(), /spill/i);
    assert.match(srv.stderr(), /WARN|ERROR/);
    const s = await connected(client(`${srv.url}/s`, MODES.websocket));
    closeAll(s);
  });

  it("shuts down cleanly", async () => { assertCleanExit(await srv.stop()); });
});

describe("a 64 KiB tmpfs that fills up (ENOSPC)", () => {
  let srv, mnt, mounted = false;
  before(async () => {
    mnt = path.join(tmpDir("sluice-tmpfs-"), "mnt");
    mkdirSync(mnt);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mnt], { stdio: "pipe" });
      mounted = true;
    } catch (e) {
      return;
    }
    srv = await startDelivery(NS, { spillRootPath: path.join(mnt, "spill") });
  });
  after(async () => {
    await srv?.stop();
    if (mounted) { try { execFileSync("umount", ["-l", mnt], { stdio: "pipe" }); } catch { /* */ } }
  });

  it("some messages spill, the rest fail and are counted as failed, none lost silently", async (t) => {
    if (!mounted) return t.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): ENOSPC variant skipped");
    const r = await run(srv, 600, 1000);
    t.diagnostic(JSON.stringify({ ...r, got: r.got.length }));
    assert.ok(r.spilled > 0, "some writes fit in 64 KiB");
    checkAccounting(r, 600);
    assert.match(srv.stderr(), /spill to disk (failed|unavailable)/i);
  });

  it("shuts down cleanly", async (t) => {
    if (!mounted) return t.skip("no tmpfs");
    assertCleanExit(await srv.stop());
  });
});
