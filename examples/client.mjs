// client.mjs - subscribe to the ticker's prices with the stock socket.io-client.
//
//   make run                      (in another terminal: Sluice on examples/ticker.lua)
//   node examples/client.mjs      (COUNT=n to stop after n ticks)
//
// The port follows SLUICE_PORT (default 3000), as `make run` and every example config do:
// `SLUICE_PORT=4000 make run` pairs with `SLUICE_PORT=4000 node examples/client.mjs`.
// SLUICE_URL=http://host:port overrides the whole address (another host, https).
import { io } from "socket.io-client";

const base = process.env.SLUICE_URL || `http://127.0.0.1:${process.env.SLUICE_PORT || 3000}`;
const limit = Number(process.env.COUNT ?? 0);
const socket = io(`${base}/feed`, { reconnectionAttempts: 3, reconnectionDelayMax: 2000 });
let seen = 0;

socket.on("connect", () => {
  console.log(`connected to ${base}/feed as ${socket.id}`);
  socket.emit("subscribe", { topic: "prices" });
});

// A tick is {symbol, price, ts}; ts (milliseconds since the epoch) gives the lag. Anything
// published by hand (curl) is printed as well as it can be.
socket.on("prices", (tick) => {
  const symbol = String(tick?.symbol ?? "?").padEnd(9);
  const price = (typeof tick?.price === "number" ? tick.price.toFixed(2) : String(tick?.price ?? "?")).padStart(9);
  const lag = typeof tick?.ts === "number" ? `${Date.now() - tick.ts} ms` : "no ts";
  console.log(`${symbol} ${price}  (${lag})`);
  if (limit && ++seen >= limit) socket.close();
});

socket.on("error", (err) => console.error("error event:", err));
socket.on("connect_error", (err) => console.error(`connect error: ${err.message} (${base}/feed)`));
// Nobody there: say where we looked and exit 1, so scripts and people notice.
socket.io.on("reconnect_failed", () => {
  console.error(`could not connect to ${base}/feed: is Sluice running on that port? ` +
    "(SLUICE_PORT=n, or SLUICE_URL=http://host:port)");
  process.exit(1);
});
socket.on("disconnect", (reason) => console.log("disconnected:", reason));
