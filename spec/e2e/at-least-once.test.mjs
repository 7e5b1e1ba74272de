// at-least-once.test.mjs - AT_LEAST_ONCE deliveries as StreamFenceJs clients see them
// (STREAMFENCE.md §1.7, §2.4): [topic, payload, {namespace, topic, messageId, ackRequired:true}],
// an unacked message re-sent identically until maxRetries is exhausted (which frees the
// in-flight slot), and the client's `ack` event {topic, messageId} settling a message.
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanExit, client, connected, closeAll, MODES, Inbox, publish } from "./helpers.mjs";

const CONFIG = `
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      namespaces = {
        { path = "/alo", topics = { "order" }, deliveryMode = "AT_LEAST_ONCE", overflowAction = "REJECT_NEW",
          ackTimeoutMs = 300, maxRetries = 1, maxInFlight = 1, maxQueuedMessagesPerClient = 16 },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

for (const [mode, opts] of Object.entries({ websocket: MODES.websocket, "polling+upgrade": MODES["polling+upgrade"] })) {
  it(`(${mode}) metadata, one retry then exhaustion, ack settles`, async () => {
    const s = await connected(client(`${srv.url}/alo`, opts));
    try {
      const box = new Inbox(s, "order");
      assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "order" }), { ok: true });
      const [idA] = await publish(srv.port, { namespace: "/alo", topic: "order", payload: { n: "A" } });
      const [idB] = await publish(srv.port, { namespace: "/alo", topic: "order", payload: { n: "B" } });

      const first = await box.next(5000);
      assert.equal(first.length, 2, `AT_LEAST_ONCE delivers payload + metadata: ${JSON.stringify(first)}`);
      assert.deepEqual(first[0], { n: "A" });
      assert.deepEqual(Object.keys(first[1]), ["namespace", "topic", "messageId", "ackRequired"]);
      assert.deepEqual(first[1], { namespace: "/alo", topic: "order", messageId: idA, ackRequired: true });

      // not acked: re-sent identically once (maxRetries 1), then exhausted; only then B (maxInFlight 1)
      assert.deepEqual(await box.next(5000), first, "the retry is identical to the first send");
      const b = await box.next(5000);
      assert.deepEqual(b, [{ n: "B" }, { namespace: "/alo", topic: "order", messageId: idB, ackRequired: true }]);

      // acking B settles it: C is next, B is not re-sent
      s.emit("ack", { topic: "order", messageId: idB });
      const [idC] = await publish(srv.port, { namespace: "/alo", topic: "order", payload: { n: "C" } });
      const c = await box.next(5000);
      assert.deepEqual(c, [{ n: "C" }, { namespace: "/alo", topic: "order", messageId: idC, ackRequired: true }]);
      s.emit("ack", { topic: "order", messageId: idC });
    } finally { closeAll(s); }
  });
}

it("message ids are unique strings with the msg- prefix", async () => {
  const ids = await publish(srv.port, Array.from({ length: 20 }, (_, i) => ({ namespace: "/alo", topic: "order", payload: i })));
  assert.equal(new Set(ids).size, 20);
  for (const id of ids) assert.match(id, /^msg-/);
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
