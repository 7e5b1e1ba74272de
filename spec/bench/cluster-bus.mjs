// cluster-bus.mjs - how many publishes per second one Redis carries for a Sluice cluster
// node: a redis-server (spec/e2e/redis.mjs) and one Sluice node with `cluster`, N publishes of
// a SIZE-byte JSON payload posted to /api/publish in batches of BATCH; the clock runs from the
// first request until the node's sluice_cluster_published_total (XADDs confirmed by Redis)
// and sluice_cluster_received_total (entries read back and delivered) both reach N.
//
//   node spec/bench/cluster-bus.mjs [N=200000] [BATCH=1000] [SIZE=100] [MODE=api|lua] [CONC=4]
//
// MODE=lua publishes from a Lua timer in the node instead (BATCH per 1 ms tick, from the
// first publish): the bus alone, without the HTTP API's parsing in front of it.
// CLUSTER=0 runs the same publishes on a node without `cluster` (the CPU it takes without
// the bus; the wall-clock figure then only covers posting).
//
// Prints one line per figure. The node runs build/sluice (SLUICE_BIN to change it).
import { readFileSync } from "node:fs";
import { startRedis } from "../e2e/redis.mjs";
import { startServer } from "../e2e/helpers.mjs";

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.split("=")));
const N = Number(args.N ?? 200000), BATCH = Number(args.BATCH ?? 1000), SIZE = Number(args.SIZE ?? 100);
const MODE = args.MODE ?? "api";
const CONC = Number(args.CONC ?? 4); // concurrent POST loops (api mode)
const CLUSTER = args.CLUSTER !== "0"; // CLUSTER=0: the same publishes on a node without cluster

// CPU seconds (user + system) a process has used so far.
function cpuSeconds(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

async function metric(port, name) {
  const t = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(t);
  return m ? Number(m[1]) : NaN;
}

const redis = await startRedis();
const node = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0,
  ${CLUSTER ? `cluster = { redis = "${redis.url}", streamKey = "bench", maxLen = ${N + 10000}, readCount = 1000 },` : ""}
  ${MODE === "lua" ? `onStart = function()
    local sent, pad, t = 0, ${SIZE}, nil
    t = sluice.every(1, function()
      if sent == 0 and ${CLUSTER} and not sluice.stats().servers[1].cluster.up then return end
      for i = 1, ${BATCH} do
        if sent >= ${N} then t:stop() return end
        local body = '{"seq":' .. sent .. ',"data":"'
        body = body .. string.rep("x", pad - #body - 2) .. '"}'
        sluice.publish("/feed", "prices", body, { json = true })
        sent = sent + 1
      end
    end)
  end,` : ""}
  namespaces = { { path = "/feed", topics = { "prices" }, overflowAction = "DROP_OLDEST" } } } } }`);
try {
  for (let i = 0; CLUSTER && i < 200 && (await metric(node.port, "sluice_cluster_up")) !== 1; i++)
    await new Promise((r) => setTimeout(r, 50));
  // one payload of SIZE bytes of JSON: {"seq":n,"data":"xx..."}
  const pad = (n) => "x".repeat(Math.max(0, SIZE - `{"seq":${n},"data":""}`.length));
  // CONC loops post batches concurrently (bodies built before the clock starts)
  const bodies = [];
  for (let sent = 0; MODE === "api" && sent < N; sent += BATCH) {
    const batch = [];
    for (let i = sent; i < Math.min(N, sent + BATCH); i++)
      batch.push({ namespace: "/feed", topic: "prices", payload: { seq: i, data: pad(i) } });
    bodies.push(JSON.stringify(batch));
  }
  const c0 = cpuSeconds(node.pid), r0 = cpuSeconds(redis.pid);
  const t0 = performance.now();
  let next = 0;
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < bodies.length) {
      const body = bodies[next++];
      const res = await fetch(`http://127.0.0.1:${node.port}/api/publish`, {
        method: "POST", headers: { "content-type": "application/json" }, body,
      });
      if (res.status !== 200) throw new Error(`publish: ${res.status} ${await res.text()}`);
    }
  }));
  const tPosted = performance.now();
  let pub = 0, rec = 0;
  while (CLUSTER && (pub < N || rec < N)) {
    pub = await metric(node.port, "sluice_cluster_published_total");
    rec = await metric(node.port, "sluice_cluster_received_total");
    if (performance.now() - t0 > 120000) {
      const t = await (await fetch(`http://127.0.0.1:${node.port}/metrics`)).text();
      console.log(t.split("\n").filter((l) => l.startsWith("sluice_cluster")).join("\n"));
      console.log(node.stderr().split("\n").slice(-20).join("\n"));
      throw new Error(`stuck at published ${pub}, received ${rec}`);
    }
    await new Promise((r) => setTimeout(r, 100)); // /metrics costs the node CPU too
  }
  const t1 = performance.now();
  const c1 = cpuSeconds(node.pid), r1 = cpuSeconds(redis.pid);
  const s = (t1 - t0) / 1000;
  console.log(`publishes: ${N} x ${SIZE} B payload, batches of ${BATCH}`);
  console.log(`posted in ${((tPosted - t0) / 1000).toFixed(2)} s`);
  console.log(`appended and read back in ${s.toFixed(2)} s: ${Math.round(N / s)} publishes/s through one Redis`);
  const us = ((c1 - c0) * 1e6) / N, rus = ((r1 - r0) * 1e6) / N;
  console.log(`node CPU ${us.toFixed(1)} us per publish (append + read back + deliver${MODE === "api" ? " + the HTTP API" : ""}): ${Math.round(1e6 / us)} publishes/s per core`);
  console.log(`redis-server CPU ${rus.toFixed(1)} us per publish: ${Math.round(1e6 / rus)} publishes/s per core`);
  if (CLUSTER) console.log(`XLEN bench: ${redis.cli("XLEN", "bench").trim()} (maxLen ~${N + 10000})`);
} finally {
  await node.stop();
  await redis.stop();
}
