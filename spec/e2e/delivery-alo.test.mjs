// delivery-alo.test.mjs - AT_LEAST_ONCE delivery (DESIGN.md §4, STREAMFENCE.md §1.7, bugs
// B2 and B8): retry counts and spacing (fixed and exponential backoff), an ack stops retries,
// exhaustion frees the slot (metric and onRetryExhausted hook), maxInFlight window and order,
// an ack settles only a message that was sent to that client on that topic (B8), unsubscribing
// with a message in flight never wedges the lane (B2), messageIds unique across namespaces
// and across two runs of the server (B8).
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { assertCleanExit, client, connected, closeAll, MODES, Inbox, publish } from "./helpers.mjs";
import { startDelivery, metrics, mval, lua } from "./delivery-helpers.mjs";

const alo = (path, extra) => ({
  path, topics: ["t", "u"], deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW",
  maxQueuedMessagesPerClient: 16, maxInFlight: 1, ackTimeoutMs: 10000, maxRetries: 1, ...extra,
});
const NAMESPACES = [
  alo("/retry", { ackTimeoutMs: 300, maxRetries: 2 }),
  alo("/backoff", { ackTimeoutMs: 150, maxRetries: 3, retryBackoff: 2 }),
  alo("/ack", { ackTimeoutMs: 400, maxRetries: 3 }),
  alo("/window", { maxInFlight: 3, maxQueuedMessagesPerClient: 10 }),
  alo("/b8"),
  alo("/b2"),
  alo("/exh", { ackTimeoutMs: 100, maxRetries: 1 }),
  alo("/other"),
  alo("/gauge", { maxInFlight: 2, maxQueuedMessagesPerClient: 10 }),
  { path: "/events", topics: ["exhausted"], deliveryMode: "BEST_EFFORT" },
];
const SERVER = {
  onRetryExhausted: lua("function(ev) sluice.publish('/events', 'exhausted', ev) end"),
};

let srv;
before(async () => { srv = await startDelivery(NAMESPACES, SERVER); });
after(async () => { await srv?.stop(); });

// sub: a socket.io-client subscribed to ns/topic recording deliveries with arrival times.
async function sub(ns, topic = "t") {
  const s = await connected(client(`${srv.url}${ns}`, MODES.websocket));
  const box = new Inbox(s, topic);
  const times = [];
  s.on(topic, () => times.push(performance.now()));
  assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic }), { ok: true });
  return { s, box, times };
}
const ack = (s, topic, messageId) => s.timeout(5000).emitWithAck("ack", { topic, messageId });
const meta = (ns, topic, messageId) => ({ namespace: ns, topic, messageId, ackRequired: true });
const counter = (m, name, ns, topic = "t") => mval(m, name, { namespace: ns, topic });
const isUnknown = (r) => r && r.ok === false && r.code === "UNKNOWN_MESSAGE";

it("an unacked message is re-sent identically maxRetries times, ackTimeoutMs apart, then exhausted; only then the next goes", async () => {
  const { s, box, times } = await sub("/retry");
  try {
    const t0 = performance.now();
    const [idA, idB] = await publish(srv.port, [
      { namespace: "/retry", topic: "t", payload: { n: "A" } },
      { namespace: "/retry", topic: "t", payload: { n: "B" } },
    ]);
    assert.match(idA, /^msg-/);
    const first = await box.next(3000);
    assert.deepEqual(first, [{ n: "A" }, meta("/retry", "t", idA)]);
    assert.deepEqual(await box.next(3000), first, "retry 1 is identical");
    assert.deepEqual(await box.next(3000), first, "retry 2 is identical");
    const b = await box.next(3000);
    assert.deepEqual(b, [{ n: "B" }, meta("/retry", "t", idB)], "after 1 + maxRetries sends A is exhausted and B goes");
    // Send k (0-based) leaves no earlier than k x ackTimeoutMs after the publish; arrival times
    // are measured from the publish (a late first arrival must not shrink the first gap).
    const at = times.map((x) => x - t0);
    const shown = at.map((x) => x.toFixed(0)).join(", ");
    for (let k = 1; k <= 3; k++) {
      assert.ok(at[k] >= k * 300 * 0.8, `send ${k} at ${shown} ms after the publish (ackTimeoutMs 300)`);
      assert.ok(at[k] - at[k - 1] <= 300 * 3, `spacing too long: ${shown}`);
    }
    const m = await metrics(srv.port);
    assert.equal(counter(m, "streamfence_retries_total", "/retry"), 2);
    assert.equal(counter(m, "streamfence_retries_exhausted_total", "/retry"), 1);
    assert.deepEqual(await ack(s, "t", idB), { ok: true });
    assert.ok(isUnknown(await ack(s, "t", idA)), "an exhausted message can no longer be acked");
  } finally { closeAll(s); }
});

it("retryBackoff 2: resends after ackTimeoutMs x 1, 2, 4", async () => {
  const { s, box, times } = await sub("/backoff");
  try {
    const t0 = performance.now();
    const [id] = await publish(srv.port, { namespace: "/backoff", topic: "t", payload: 1 });
    await box.count(4, 5000);
    for (const a of box.items) assert.deepEqual(a, [1, meta("/backoff", "t", id)]);
    // sends at 0, 150, 150+300, 150+300+600 ms (fixed spacing would give 0, 150, 300, 450)
    const at = times.map((x) => x - t0);
    const shown = at.map((x) => x.toFixed(0)).join(", ");
    const due = [0, 150, 450, 1050];
    for (let k = 1; k <= 3; k++) {
      assert.ok(at[k] >= due[k] * 0.8, `send ${k} at ${shown} ms after the publish, due at ${due.join(", ")}`);
      assert.ok(at[k] - at[k - 1] <= (due[k] - due[k - 1]) * 3, `spacing too long: ${shown}`);
    }
    assert.deepEqual(await ack(s, "t", id), { ok: true }, "still in flight after the last retry: the ack settles it");
  } finally { closeAll(s); }
});

it("an ack stops the retries ({ok:true}); a second ack of the same id is UNKNOWN_MESSAGE", async () => {
  const { s, box, times } = await sub("/ack");
  try {
    const [idA] = await publish(srv.port, { namespace: "/ack", topic: "t", payload: "A" });
    await box.next(3000);
    assert.deepEqual(await ack(s, "t", idA), { ok: true });
    const again = await ack(s, "t", idA);
    assert.ok(isUnknown(again), `second ack answered ${JSON.stringify(again)}`);
    // B goes at once (the slot is free) and is not acked: wait for its first retry. A's deadline
    // was earlier than B's, so a resend of A would have come first.
    const t0 = performance.now();
    const [idB] = await publish(srv.port, { namespace: "/ack", topic: "t", payload: "B" });
    assert.deepEqual(await box.next(3000), ["B", meta("/ack", "t", idB)]);
    assert.deepEqual(await box.next(3000), ["B", meta("/ack", "t", idB)]);
    assert.ok(times[2] - t0 >= 400 * 0.8, `B's retry ${(times[2] - t0).toFixed(0)} ms after its publish`);
    assert.equal(box.items.filter((a) => a[0] === "A").length, 1, "A was sent once");
    const m = await metrics(srv.port);
    assert.equal(counter(m, "streamfence_retries_total", "/ack"), 1, "only B was retried");
    assert.deepEqual(await ack(s, "t", idB), { ok: true });
  } finally { closeAll(s); }
});

it("maxInFlight 3: three go out, the rest wait; each ack (in any order) releases the next, in FIFO order", async () => {
  const { s, box } = await sub("/window");
  try {
    const ids = await publish(srv.port, [1, 2, 3, 4, 5, 6].map((n) => ({ namespace: "/window", topic: "t", payload: n })));
    await box.count(3, 3000);
    let m = await metrics(srv.port);
    assert.equal(counter(m, "sluice_queued_messages", "/window"), 3, "three wait behind the window");
    assert.equal(box.items.length, 3);
    assert.deepEqual(await ack(s, "t", ids[1]), { ok: true });
    await box.count(4, 3000);
    assert.deepEqual(await ack(s, "t", ids[0]), { ok: true });
    await box.count(5, 3000);
    assert.deepEqual(await ack(s, "t", ids[2]), { ok: true });
    await box.count(6, 3000);
    assert.deepEqual(box.items.map((a) => a[0]), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(box.items.map((a) => a[1].messageId), ids);
    for (const id of ids.slice(3)) assert.deepEqual(await ack(s, "t", id), { ok: true });
    m = await metrics(srv.port);
    assert.equal(counter(m, "sluice_queued_messages", "/window"), 0);
    assert.equal(counter(m, "streamfence_retries_total", "/window"), 0);
  } finally { closeAll(s); }
});

it("B8: an ack of a queued, never-sent id (or of the right id on the wrong topic) is ignored and removes nothing", async () => {
  const { s, box } = await sub("/b8");
  try {
    const [idA, idB] = await publish(srv.port, [
      { namespace: "/b8", topic: "t", payload: "A" },
      { namespace: "/b8", topic: "t", payload: "B" },
    ]);
    assert.deepEqual(await box.next(3000), ["A", meta("/b8", "t", idA)]);
    assert.ok(isUnknown(await ack(s, "t", idB)), "B was never sent: its ack is refused");
    assert.ok(isUnknown(await ack(s, "u", idA)), "A was not sent on topic u");
    assert.ok(isUnknown(await ack(s, "t", "msg-1")), "a guessed id");
    s.emit("ack", { topic: "t", messageId: idB }); // the StreamFenceJs way: no ack id
    assert.ok(isUnknown(await ack(s, "t", "not-an-id")), "the ack without an ack id above changed nothing either");
    const m = await metrics(srv.port);
    assert.equal(counter(m, "sluice_queued_messages", "/b8"), 1, "B is still queued");
    assert.equal(box.items.length, 1);
    assert.deepEqual(await ack(s, "t", idA), { ok: true });
    assert.deepEqual(await box.next(3000), ["B", meta("/b8", "t", idB)], "B is delivered after A's ack");
    assert.deepEqual(await ack(s, "t", idB), { ok: true });
  } finally { closeAll(s); }
});

it("B8: one client's ack settles only its own copy of a message", async () => {
  const x = await sub("/b8");
  const y = await sub("/b8");
  try {
    const [idC] = await publish(srv.port, { namespace: "/b8", topic: "t", payload: "C" });
    await x.box.next(3000);
    await y.box.next(3000);
    assert.deepEqual(await ack(y.s, "t", idC), { ok: true });
    const [idD] = await publish(srv.port, { namespace: "/b8", topic: "t", payload: "D" });
    assert.deepEqual(await y.box.next(3000), ["D", meta("/b8", "t", idD)]);
    const m = await metrics(srv.port);
    assert.equal(counter(m, "sluice_queued_messages", "/b8"), 1, "D still waits for x (C unacked there)");
    assert.equal(x.box.items.length, 1);
    assert.deepEqual(await ack(x.s, "t", idC), { ok: true });
    assert.deepEqual(await x.box.next(3000), ["D", meta("/b8", "t", idD)]);
    assert.deepEqual(await ack(x.s, "t", idD), { ok: true });
    assert.deepEqual(await ack(y.s, "t", idD), { ok: true });
  } finally { closeAll(x.s, y.s); }
});

it("B2: unsubscribe with a message in flight, subscribe again: new messages are delivered", async () => {
  const { s, box } = await sub("/b2");
  try {
    const [idA] = await publish(srv.port, { namespace: "/b2", topic: "t", payload: "A" });
    assert.deepEqual(await box.next(3000), ["A", meta("/b2", "t", idA)]);
    assert.deepEqual(await s.timeout(5000).emitWithAck("unsubscribe", { topic: "t" }), { ok: true });
    assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "t" }), { ok: true });
    // ackTimeoutMs is 10 s: B must not wait for A's deadline
    const [idB, idC] = await publish(srv.port, [
      { namespace: "/b2", topic: "t", payload: "B" },
      { namespace: "/b2", topic: "t", payload: "C" },
    ]);
    assert.deepEqual(await box.next(3000), ["B", meta("/b2", "t", idB)]);
    assert.ok(isUnknown(await ack(s, "t", idA)), "A went with the old subscription");
    assert.deepEqual(await ack(s, "t", idB), { ok: true });
    assert.deepEqual(await box.next(3000), ["C", meta("/b2", "t", idC)]);
    assert.deepEqual(await ack(s, "t", idC), { ok: true });
  } finally { closeAll(s); }
});

it("exhaustion calls onRetryExhausted once with the namespace, topic and messageId", async () => {
  const ev = await sub("/events", "exhausted");
  const { s, box } = await sub("/exh");
  try {
    const [id] = await publish(srv.port, { namespace: "/exh", topic: "t", payload: "X" });
    await box.count(2, 3000);
    const [e] = await ev.box.next(3000);
    assert.equal(e.namespace, "/exh");
    assert.equal(e.topic, "t");
    assert.equal(e.messageId, id);
    assert.equal(e.clientId, s.id);
    const m = await metrics(srv.port);
    assert.equal(counter(m, "streamfence_retries_exhausted_total", "/exh"), 1);
  } finally { closeAll(s, ev.s); }
});

it("gauges: messages in flight (awaiting an ack) and messages queued behind the window", async () => {
  const { s, box } = await sub("/gauge");
  try {
    const ids = await publish(srv.port, [1, 2, 3, 4, 5].map((n) => ({ namespace: "/gauge", topic: "t", payload: n })));
    await box.count(2, 3000);
    let m = await metrics(srv.port);
    assert.equal(counter(m, "sluice_queued_messages", "/gauge"), 3);
    assert.equal(counter(m, "sluice_in_flight_messages", "/gauge"), 2, "sluice_in_flight_messages");
    for (const id of ids.slice(0, 2)) assert.deepEqual(await ack(s, "t", id), { ok: true });
    await box.count(4, 3000);
    for (const id of ids.slice(2, 4)) assert.deepEqual(await ack(s, "t", id), { ok: true });
    await box.count(5, 3000);
    assert.deepEqual(await ack(s, "t", ids[4]), { ok: true });
    m = await metrics(srv.port);
    assert.equal(counter(m, "sluice_in_flight_messages", "/gauge"), 0);
    assert.equal(counter(m, "sluice_queued_messages", "/gauge"), 0);
    assert.equal(counter(m, "sluice_queued_bytes", "/gauge"), 0);
  } finally { closeAll(s); }
});

it("messageIds are distinct across namespaces (B8: StreamFenceJs shares one counter and restarts it)", async () => {
  const ids = await publish(srv.port, Array.from({ length: 20 }, (_, i) =>
    ({ namespace: i % 2 ? "/other" : "/b2", topic: "u", payload: i })));
  assert.equal(new Set(ids).size, 20);
  for (const id of ids) assert.match(id, /^msg-/);
  assert.notDeepEqual(ids.slice(0, 2), ["msg-1", "msg-2"]);
});

test("messageIds are unique across two runs of the server (B8)", async () => {
  const runs = [];
  for (let r = 0; r < 2; r++) {
    const one = await startDelivery([alo("/a"), alo("/b")]);
    try {
      runs.push(await publish(one.port, Array.from({ length: 30 }, (_, i) =>
        ({ namespace: i % 2 ? "/a" : "/b", topic: "t", payload: i }))));
    } finally { assertCleanExit(await one.stop()); }
  }
  const overlap = runs[0].filter((id) => runs[1].includes(id));
  assert.deepEqual(overlap, [], `ids reused after a restart: ${overlap.slice(0, 5)}`);
  assert.equal(new Set([...runs[0], ...runs[1]]).size, 60);
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
