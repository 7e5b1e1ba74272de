// baseline-socketio.mjs - the plain socket.io 4 server that `make bench` compares Sluice with.
//
// Naive fan-out, the way a socket.io application is usually written:
//   namespace /feed; on "subscribe" {topic} the socket joins the room named after the topic;
//   a producer timer emits io.of("/feed").to("prices").emit("prices", payload) at RATE msg/s.
// Payload: {"ts":<wall-clock microseconds>,"seq":n,"sym":"S<n%10>","data":"xxx..."} padded so that its JSON
// is SIZE bytes (the same shape as spec/bench/sluice-bench.lua).
//
// Options (env or argv KEY=VALUE): PORT (3000), HOST (127.0.0.1), RATE (msg/s, 1000; 0 = no
// producer), SIZE (bytes of payload JSON, 100), TICK_MS (producer period, 10; each tick publishes
// the messages due by then, about RATE/1000*TICK_MS, so rates above 100/s are batched per tick), PING_INTERVAL_MS (25000),
// PING_TIMEOUT_MS (20000), PRODUCER_DELAY_MS (0: the producer starts this long after listening,
// so that clients can connect before the fan-out load begins), TLS_CERT / TLS_KEY (PEM files:
// serve over https.createServer with them, the TLS scenarios), CLUSTER_REDIS (a redis:// URL:
// join a cluster through @socket.io/redis-streams-adapter 0.3.1 on the stream "socket.io",
// the cluster scenario; the producer's emits then also go to the stream and the other
// servers deliver them to their sockets; CLUSTER_MAXLEN: the adapter's maxLen). Transport:
// websocket only.
// Prints "listening <port>" on stdout.
import http from "node:http";
import https from "node:https";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createRequire } from "node:module";
import { Server } from "socket.io";

const args = Object.fromEntries(
  process.argv.slice(2).map((a) => {
    const i = a.indexOf("=");
    return i < 0 ? [a, "1"] : [a.slice(0, i), a.slice(i + 1)];
  }),
);
const opt = (k, d) => Number(args[k] ?? process.env[k] ?? d);
const PORT = opt("PORT", 3000);
const HOST = args.HOST ?? process.env.HOST ?? "127.0.0.1";
const RATE = opt("RATE", 1000);
const SIZE = opt("SIZE", 100);
const TICK_MS = opt("TICK_MS", 10);
const PING_INTERVAL_MS = opt("PING_INTERVAL_MS", 25000);
const PING_TIMEOUT_MS = opt("PING_TIMEOUT_MS", 20000);
const PRODUCER_DELAY_MS = opt("PRODUCER_DELAY_MS", 0);
const TOPIC = "prices";

const CLUSTER_REDIS = args.CLUSTER_REDIS ?? process.env.CLUSTER_REDIS ?? "";
let adapter;
if (CLUSTER_REDIS) {
  const require = createRequire(import.meta.url);
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-streams-adapter");
  const redisClient = createClient({ url: CLUSTER_REDIS });
  redisClient.on("error", (e) => console.error(`redis: ${e.message}`));
  await redisClient.connect();
  const maxLen = Number(args.CLUSTER_MAXLEN ?? process.env.CLUSTER_MAXLEN ?? 0);
  adapter = createAdapter(redisClient, maxLen > 0 ? { maxLen } : {});
}

const TLS_CERT = args.TLS_CERT ?? process.env.TLS_CERT ?? "";
const httpServer = TLS_CERT
  ? https.createServer({ cert: readFileSync(TLS_CERT), key: readFileSync(args.TLS_KEY ?? process.env.TLS_KEY) })
  : http.createServer();
const io = new Server(httpServer, {
  transports: ["websocket"],
  pingInterval: PING_INTERVAL_MS,
  pingTimeout: PING_TIMEOUT_MS,
  serveClient: false,
  ...(adapter ? { adapter } : {}),
});

const feed = io.of("/feed");
feed.on("connection", (socket) => {
  socket.on("subscribe", (p) => {
    if (p && typeof p.topic === "string" && p.topic === TOPIC) socket.join(p.topic);
  });
  socket.on("unsubscribe", (p) => {
    if (p && typeof p.topic === "string") socket.leave(p.topic);
  });
  socket.on("ack", () => {});
});

// wall clock with microsecond resolution
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);

// {"ts":1732740000000000,"seq":1000000,"sym":"S0","data":""} is ~55 bytes; pad "data".
const overhead = JSON.stringify({ ts: nowUs(), seq: 1000000, sym: "S0", data: "" }).length;
const filler = "x".repeat(Math.max(0, SIZE - overhead));
let seq = 0;

// Messages due this tick: RATE x elapsed time minus what was already sent, so that a timer
// that fires late (or a runtime whose interval timer drifts) still offers the same load.
// At most 2 ticks' worth is caught up at once; older backlog is skipped (closed loop: an
// overloaded server publishes less instead of queueing without bound).
function tickBatches() {
  const t0 = performance.now();
  const cap = Math.max(1, Math.ceil((RATE * TICK_MS * 2) / 1000));
  let sent = 0;
  return () => {
    const due = Math.floor((RATE * (performance.now() - t0)) / 1000);
    if (due - sent > cap) sent = due - cap;
    const n = due - sent;
    sent = due;
    return n;
  };
}

httpServer.listen(PORT, HOST, () => {
  process.stdout.write(`listening ${httpServer.address().port}\n`);
  if (RATE > 0) {
    setTimeout(() => {
      const batch = tickBatches();
      setInterval(() => {
        const n = batch();
        const room = feed.to(TOPIC);
        for (let i = 0; i < n; i++) {
          seq++;
          room.emit(TOPIC, { ts: nowUs(), seq, sym: "S" + (seq % 10), data: filler });
        }
      }, TICK_MS);
    }, PRODUCER_DELAY_MS);
  }
});

const stop = () => {
  io.close();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
