// spec/bench/recovery-time.mjs [ROUNDS] - how long recovering a session that missed MISSED
// (1000) messages takes on one node, with the real socket.io-client: a subscribed client is
// cut (a TCP proxy drops both connections and holds reconnections), MISSED messages of SIZE
// (100) bytes are published, the proxy lets the client back in. Per round:
//   server - the server's own time to take the session back and replay the missed messages
//            into its lanes (the "replayed into its lanes in X ms" log line);
//   client - from the client's new Engine.IO connection being open (the CONNECT with pid and
//            offset is sent right then) to its handler having run for the first, and for the
//            last missed message (the transport and the client's parsing of every message);
//   live   - for comparison, the same MISSED messages published to the client while it is
//            connected: its handler's first to last message.
// Prints the median and the worst of each, and checks every round recovered every message.
// Env: SLUICE_BIN (build/sluice), MISSED, SIZE.
import { io } from "socket.io-client";
import { startDelivery } from "../e2e/delivery-helpers.mjs";
import { publish, sleep } from "../e2e/helpers.mjs";
import { CutProxy } from "../e2e/recovery-helpers.mjs";

const ROUNDS = Number(process.argv[2] || 20);
const MISSED = Number(process.env.MISSED || 1000);
const SIZE = Number(process.env.SIZE || 100);

const srv = await startDelivery([{ path: "/r", topics: ["t"], maxQueuedMessagesPerClient: MISSED + 10,
  maxQueuedBytesPerClient: 64 * 1024 * 1024, recovery: { historySize: MISSED + 10, historyBytes: 64 * 1024 * 1024 } }],
{ socketHighWaterBytes: 65536, socketSendBufferBytes: 0 }, {});
const px = new CutProxy(srv.port);
await px.listen();
const s = io(`http://127.0.0.1:${px.port}/r`, { forceNew: true, transports: ["websocket"],
  reconnectionDelay: 10, reconnectionDelayMax: 20, randomizationFactor: 0 });
let got = 0, last = 0, first = 0, from = 0, want = 0, done = null;
s.on("t", () => {
  got++;
  if (got === from + 1) first = performance.now();
  if (got === want) { last = performance.now(); done?.(); }
});
await new Promise((r) => s.once("connect", r));
await s.timeout(5000).emitWithAck("subscribe", { topic: "t" });
await publish(srv.port, [{ namespace: "/r", topic: "t", payload: 0 }]);
want = 1;
await new Promise((r) => { done = r; if (got >= want) r(); });
const pad = "x".repeat(Math.max(0, SIZE - 20));
const serverMs = [], clientMs = [], firstMs = [], liveMs = [];
let opened = 0;
s.io.on("open", () => { opened = performance.now(); });
for (let i = 0; i < ROUNDS; i++) {
  const disc = new Promise((r) => s.once("disconnect", r));
  px.cut();
  await disc;
  for (let k = 0; k < MISSED; k += 500) {
    await publish(srv.port, Array.from({ length: Math.min(500, MISSED - k) }, (_, j) => ({ namespace: "/r", topic: "t", payload: { n: k + j, pad } })));
  }
  from = got;
  want = got + MISSED;
  const all = new Promise((r) => { done = r; });
  const logs = srv.stderr().length;
  px.release();
  await all;
  if (!s.recovered) throw new Error(`round ${i}: not recovered`);
  clientMs.push(last - opened);
  firstMs.push(first - opened);
  await srv.waitLog(/replayed into its lanes in [\d.]+ ms/);
  const m = [...srv.stderr().slice(logs).matchAll(/(\d+) message\(s\) replayed into its lanes in ([\d.]+) ms/g)].at(-1);
  if (!m || Number(m[1]) !== MISSED) throw new Error(`round ${i}: replay log ${m?.[0]}`);
  serverMs.push(Number(m[2]));
  await sleep(50);
  // live, for comparison
  from = got;
  want = got + MISSED;
  const live = new Promise((r) => { done = r; });
  for (let k = 0; k < MISSED; k += 500) {
    await publish(srv.port, Array.from({ length: Math.min(500, MISSED - k) }, (_, j) => ({ namespace: "/r", topic: "t", payload: { n: k + j, pad } })));
  }
  await live;
  liveMs.push(last - first);
  await sleep(50);
}
s.close();
await px.close();
await srv.stop();
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
const fmt = (a) => `median ${med(a).toFixed(3)} ms, worst ${Math.max(...a).toFixed(3)} ms`;
console.log(`recovery of a session that missed ${MISSED} messages of ${SIZE} B, ${ROUNDS} rounds, all recovered`);
console.log(`  server (take back + replay into lanes): ${fmt(serverMs)}`);
console.log(`  client (CONNECT sent -> first missed message handled): ${fmt(firstMs)}`);
console.log(`  client (CONNECT sent -> last missed message handled): ${fmt(clientMs)}`);
console.log(`  live, for comparison (first -> last of ${MISSED} published while connected): ${fmt(liveMs)}`);
