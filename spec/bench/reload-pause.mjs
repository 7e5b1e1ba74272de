// reload-pause.mjs - how long a hot reload pauses delivery (DESIGN.md §5: < 10 ms, no
// connection dropped). Part of `make bench` (spec/bench/run.sh calls it) and runnable alone:
//
//   node spec/bench/reload-pause.mjs [--clients 100] [--reloads 10] [--sluice build/sluice]
//
// Starts Sluice with a Lua producer publishing one message per millisecond on /feed "prices"
// to N socket.io clients (websocket), then POSTs /api/reload RELOADS times, 500 ms apart,
// rewriting the config each time (so every reload really loads a new file into a new VM).
// Reports, as one JSON line on stdout:
//   reload_ms_*      the loop time the reload itself took (server-measured, from the API reply)
//   gap_ms_*         per client, the longest gap between two deliveries inside a window of
//                    ±100 ms around each reload, versus the same statistic in quiet windows
//   disconnects      connections lost during the run (must be 0)
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : def;
};
const CLIENTS = Number(arg("clients", 100));
const RELOADS = Number(arg("reloads", 10));
const BIN = path.resolve(ROOT, arg("sluice", process.env.SLUICE_BIN || "build/sluice"));

const dir = mkdtempSync(path.join(tmpdir(), "sluice-reload-bench-"));
const file = path.join(dir, "reload.lua");
const config = (gen) => `
-- generation ${gen}
local seq = 0
return { servers = { bench = {
  host = "127.0.0.1", port = 0,
  namespaces = { { path = "/feed", topics = { "prices" }, overflowAction = "DROP_OLDEST" } },
  onStart = function()
    sluice.every(1, function()
      seq = seq + 1
      sluice.publish("/feed", "prices", { seq = seq, sym = "S" .. (seq % 10), gen = ${gen} })
    end)
  end,
} } }
`;
writeFileSync(file, config(0));

const srv = spawn(BIN, [file], { stdio: ["ignore", "ignore", "pipe"] });
let err = "";
const port = await new Promise((resolve, reject) => {
  const t = setTimeout(() => reject(new Error(`no listening line: ${err}`)), 10000);
  srv.stderr.on("data", (d) => {
    err += d;
    const m = err.match(/listening on http:\/\/[^:]+:(\d+)/);
    if (m) { clearTimeout(t); resolve(Number(m[1])); }
  });
  srv.on("exit", () => reject(new Error(`sluice exited: ${err}`)));
});

const arrivals = []; // per client: array of receive times (ms, performance.now)
let disconnects = 0;
const socks = [];
for (let i = 0; i < CLIENTS; i++) {
  const times = [];
  arrivals.push(times);
  const s = io(`http://127.0.0.1:${port}/feed`, { transports: ["websocket"], forceNew: true, reconnection: false });
  s.on("connect", () => s.emit("subscribe", { topic: "prices" }));
  s.on("prices", () => times.push(performance.now()));
  s.on("disconnect", () => { disconnects++; });
  socks.push(s);
}
await new Promise((r) => setTimeout(r, 2000));

const reloadAt = [];
const reloadMs = [];
for (let g = 1; g <= RELOADS; g++) {
  writeFileSync(file, config(g));
  const t0 = performance.now();
  const r = await fetch(`http://127.0.0.1:${port}/api/reload`, { method: "POST", headers: { "content-type": "application/json" } });
  const body = await r.json();
  if (r.status !== 200) throw new Error(`reload ${g}: ${JSON.stringify(body)}`);
  reloadAt.push(t0);
  reloadMs.push(body.ms);
  await new Promise((res) => setTimeout(res, 500));
}
await new Promise((r) => setTimeout(r, 500));

// Longest inter-arrival gap per client inside [t-100, t+100] windows around reloads, and in
// equally long quiet windows 250 ms after each reload.
function maxGap(times, from, to) {
  let best = 0, prev = null;
  for (const t of times) {
    if (t < from) { prev = t; continue; }
    if (t > to) break;
    if (prev !== null) best = Math.max(best, t - prev);
    prev = t;
  }
  return best;
}
const reloadGaps = [], quietGaps = [];
for (const times of arrivals) {
  for (const t of reloadAt) {
    reloadGaps.push(maxGap(times, t - 100, t + 100));
    quietGaps.push(maxGap(times, t + 250, t + 450));
  }
}
const pct = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : null;
};
const r3 = (x) => (x === null ? null : Math.round(x * 1000) / 1000);
const out = {
  scenario: "reload",
  clients: CLIENTS,
  reloads: RELOADS,
  rate_per_s: 1000,
  received: arrivals.reduce((a, t) => a + t.length, 0),
  disconnects,
  reload_ms_median: r3(pct(reloadMs, 0.5)),
  reload_ms_max: r3(Math.max(...reloadMs)),
  gap_ms_around_reload_p50: r3(pct(reloadGaps, 0.5)),
  gap_ms_around_reload_p99: r3(pct(reloadGaps, 0.99)),
  gap_ms_around_reload_max: r3(Math.max(...reloadGaps)),
  gap_ms_quiet_p50: r3(pct(quietGaps, 0.5)),
  gap_ms_quiet_p99: r3(pct(quietGaps, 0.99)),
  gap_ms_quiet_max: r3(Math.max(...quietGaps)),
};
console.log(JSON.stringify(out));
const dropped = disconnects;
for (const s of socks) s.close();
srv.kill("SIGTERM");
await new Promise((r) => srv.on("exit", r));
rmSync(dir, { recursive: true, force: true });
process.exit(dropped === 0 ? 0 : 1);
