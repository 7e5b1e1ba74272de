// client.mjs - subscribe to the ticker's prices with the stock socket.io-client.
//
//   make run                      (in another terminal: Sluice on examples/ticker.lua)
//   node examples/client.mjs      (SLUICE_URL=http://127.0.0.1:4000 to change; COUNT=n to stop after n ticks)
import { io } from "socket.io-client";

const base = process.env.SLUICE_URL ?? "http://127.0.0.1:3000";
const limit = Number(process.env.COUNT ?? 0);
const socket = io(`${base}/feed`, { reconnectionAttempts: 5 });
let seen = 0;

socket.on("connect", () => {
  console.log(`connected to ${base}/feed as ${socket.id}`);
  socket.emit("subscribe", { topic: "prices" });
});

socket.on("prices", (tick) => {
  const lag = Date.now() - tick.ts;
  console.log(`${tick.symbol.padEnd(9)} ${tick.price.toFixed(2).padStart(9)}  (${lag} ms)`);
  if (limit && ++seen >= limit) socket.close();
});

socket.on("error", (err) => console.error("error event:", err));
socket.on("connect_error", (err) => console.error("connect error:", err.message));
socket.on("disconnect", (reason) => console.log("disconnected:", reason));
