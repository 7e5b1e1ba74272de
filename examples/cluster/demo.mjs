// examples/cluster/demo.mjs - a client on one node receives what is published on another.
//   node examples/cluster/demo.mjs SUBSCRIBE_PORT PUBLISH_PORT
// Connects a socket.io-client to node SUBSCRIBE_PORT (/feed, topic "prices"), publishes three
// ticks through the HTTP API of node PUBLISH_PORT, prints what arrives, exits 0 when all three
// did (1 after 10 s otherwise).
import { io } from "socket.io-client";

const [sub, pub] = process.argv.slice(2).map(Number);
const s = io(`http://127.0.0.1:${sub}/feed`, { transports: ["websocket"] });
const fail = setTimeout(() => { console.error("demo: nothing arrived within 10 s"); process.exit(1); }, 10000);
let got = 0;
s.on("prices", (tick) => {
  console.log(`client on node :${sub} received ${JSON.stringify(tick)}`);
  if (++got === 3) { clearTimeout(fail); s.close(); setTimeout(() => process.exit(0), 100); }
});
s.on("connect", () => s.emit("subscribe", { topic: "prices" }, async () => {
  for (let i = 1; i <= 3; i++) {
    const payload = { symbol: "X", price: i, from: `node :${pub}` };
    const r = await fetch(`http://127.0.0.1:${pub}/api/publish`, {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ namespace: "/feed", topic: "prices", payload }),
    });
    console.log(`published on node :${pub}: ${JSON.stringify(payload)} -> ${r.status}`);
  }
}));
