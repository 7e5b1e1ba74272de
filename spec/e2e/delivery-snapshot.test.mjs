// delivery-snapshot.test.mjs - snapshot-on-subscribe and Lua coalesce keys (DESIGN.md §3.2
// and §4, issue "Delivery engine"): a new subscriber to a SNAPSHOT_ONLY topic first receives
// the last published message (nothing older); with a namespace `snapshot` function
// (state, topic, payload) -> state it first receives the merged state, then the deltas; a Lua
// coalesceKey function (topic, payload) -> key coalesces in place and is called once per
// publish, never once per subscriber.
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { assertCleanExit, client, connected, closeAll, MODES, Inbox, publish } from "./helpers.mjs";
import { startDelivery, metrics, mval, lua } from "./delivery-helpers.mjs";

const PRELUDE = `
local key_calls = 0
local function symbol_key(topic, payload)
  key_calls = key_calls + 1
  return payload.symbol
end
local function merge(state, topic, payload)
  state = state or {}
  for k, v in pairs(payload) do state[k] = v end
  return state
end
local function counters(client, event, args, ack)
  if event == "keyCalls" and ack then ack(key_calls) end
end
`;
const NAMESPACES = [
  { path: "/snap", topics: ["t"], deliveryMode: "BEST_EFFORT", overflowAction: "SNAPSHOT_ONLY" },
  { path: "/merge", topics: ["t", "u"], deliveryMode: "BEST_EFFORT", overflowAction: "REJECT_NEW", snapshot: lua("merge") },
  { path: "/luakey", topics: ["t"], deliveryMode: "BEST_EFFORT", overflowAction: "REJECT_NEW", coalesce: true,
    coalesceKey: lua("symbol_key"), maxQueuedMessagesPerClient: 10, onEvent: lua("counters") },
];

let srv;
before(async () => { srv = await startDelivery(NAMESPACES, {}, { prelude: PRELUDE }); });
after(async () => { await srv?.stop(); });

async function sub(ns, topic = "t") {
  const s = await connected(client(`${srv.url}${ns}`, MODES.websocket));
  const box = new Inbox(s, topic);
  assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic }), { ok: true });
  return { s, box };
}
const pub = (ns, payload, topic = "t") => publish(srv.port, { namespace: ns, topic, payload });

it("SNAPSHOT_ONLY: a new subscriber first receives the last published message, only that one", async () => {
  await pub("/snap", { v: 1 });
  await pub("/snap", { v: 2 });
  await publish(srv.port, [{ namespace: "/snap", topic: "t", payload: { v: 3 } }]);
  const { s, box } = await sub("/snap");
  try {
    assert.deepEqual(await box.next(3000), [{ v: 3 }]);
    await pub("/snap", { v: 4 });
    assert.deepEqual(await box.next(3000), [{ v: 4 }]);
    assert.equal(box.items.length, 2);
  } finally { closeAll(s); }
});

it("snapshot function: a new subscriber first receives the merged state, then the deltas", async () => {
  const early = await sub("/merge");
  try {
    await pub("/merge", { a: 1 });
    await pub("/merge", { b: 2 });
    await pub("/merge", { a: 3 });
    await early.box.count(3, 3000);
    assert.deepEqual(early.box.items.map((a) => a[0]), [{ a: 1 }, { b: 2 }, { a: 3 }], "subscribers see the deltas");
    const late = await sub("/merge");
    try {
      assert.deepEqual(await late.box.next(3000), [{ a: 3, b: 2 }], "the state first");
      await pub("/merge", { c: 4 });
      assert.deepEqual(await late.box.next(3000), [{ c: 4 }]);
      await early.box.until((a) => a[0].c === 4, 3000);
      assert.equal(early.box.items.length, 4, "an existing subscriber gets no state replay");
    } finally { closeAll(late.s); }
    // topics keep separate states; a topic never published to sends nothing on subscribe
    const u = await sub("/merge", "u");
    try {
      await pub("/merge", { z: 1 }, "u");
      assert.deepEqual(await u.box.next(3000), [{ z: 1 }]);
      assert.equal(u.box.items.length, 1);
    } finally { closeAll(u.s); }
  } finally { closeAll(early.s); }
});

it("Lua coalesceKey: replaces in place by the returned key, called once per publish (not per subscriber)", async () => {
  const subs = [await sub("/luakey"), await sub("/luakey"), await sub("/luakey")];
  try {
    const before = await subs[0].s.timeout(5000).emitWithAck("keyCalls");
    const P = (symbol, v) => ({ symbol, v });
    await publish(srv.port, [P("A", 1), P("B", 1), P("A", 2), P("C", 1), P("B", 2)].map((payload) => ({ namespace: "/luakey", topic: "t", payload })));
    await publish(srv.port, { namespace: "/luakey", topic: "t", payload: P("END", 0) });
    for (const { box } of subs) {
      await box.until((a) => a[0].symbol === "END", 3000);
      assert.deepEqual(box.items.map((a) => a[0]), [P("A", 2), P("B", 2), P("C", 1), P("END", 0)]);
    }
    const calls = (await subs[0].s.timeout(5000).emitWithAck("keyCalls")) - before;
    assert.equal(calls, 6, `the key function ran ${calls} times for 6 publishes to 3 subscribers`);
    const m = await metrics(srv.port);
    assert.equal(mval(m, "streamfence_messages_coalesced_total", { namespace: "/luakey", topic: "t" }), 6, "2 per subscriber");
  } finally { closeAll(...subs.map((x) => x.s)); }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
