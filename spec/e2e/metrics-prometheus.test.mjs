// metrics-prometheus.test.mjs - /metrics is an exposition Prometheus accepts for every config
// (issue 16, item 3): with two servers in one file that both have /feed, each port exposes
// only its own server's namespace and topic series (no duplicate series, no double count),
// and every scrape has the process_* series of the Prometheus client libraries and
// sluice_build_info{version}.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanExit, client, connected, closeAll, runSluice } from "./helpers.mjs";

const CONFIG = `
return {
  servers = {
    a = { host = "127.0.0.1", port = 0, namespaces = { { path = "/feed", topics = { "prices" } } } },
    b = { host = "127.0.0.1", port = 0, namespaces = { { path = "/feed", topics = { "prices" } } } },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG, { servers: 2 }); });
after(async () => { await srv?.stop(); });

async function scrape(port) {
  const r = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200);
  return r.text();
}

// exposition: checks the text-format rules Prometheus enforces on a scrape (every sample in a
// family declared once by TYPE, no sample twice with the same label set, values are numbers)
// and returns the samples as [{name, labels, value}].
function exposition(text) {
  const types = new Map();
  const seen = new Set();
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    let m;
    if ((m = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line))) {
      assert.ok(!types.has(m[1]), `TYPE of ${m[1]} declared twice`);
      types.set(m[1], m[2]);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    assert.ok(!line.startsWith("#"), `unexpected comment line: ${line}`);
    m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `sample line does not parse: ${line}`);
    const [, name, , lab = "", val] = m;
    assert.ok(!Number.isNaN(Number(val)) || /^[+-]?Inf$|^NaN$/.test(val), `value of ${line}`);
    const family = types.has(name) ? name : name.replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(family), `sample ${name} has no # TYPE`);
    const labels = {};
    for (const l of lab.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    const key = name + JSON.stringify(Object.entries(labels).sort());
    assert.ok(!seen.has(key), `duplicate series: ${line}`);
    seen.add(key);
    samples.push({ name, labels, value: Number(val) });
  }
  return samples;
}

const value = (samples, name, labels = {}) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

test("two servers with the same namespace: each port's exposition is valid and has only its own server's series", async () => {
  const [pa, pb] = srv.ports;
  const s = await connected(client(`http://127.0.0.1:${pa}/feed`, { transports: ["websocket"] }));
  try {
    const a = exposition(await scrape(pa));
    const b = exposition(await scrape(pb));
    assert.equal(value(a, "streamfence_connections_total", { namespace: "/feed" }), 1, "server a counted its client");
    assert.equal(value(b, "streamfence_connections_total", { namespace: "/feed" }), 0, "server b did not");
    assert.deepEqual(a.filter((x) => x.name === "sluice_sessions").map((x) => x.labels.server), ["a"]);
    assert.deepEqual(b.filter((x) => x.name === "sluice_sessions").map((x) => x.labels.server), ["b"]);
  } finally {
    closeAll(s);
  }
});

test("process_* (as the Prometheus client libraries define them) and sluice_build_info{version}", async () => {
  const m = exposition(await scrape(srv.port));
  const text = await scrape(srv.port);
  for (const [name, type] of [["process_cpu_seconds_total", "counter"], ["process_resident_memory_bytes", "gauge"],
    ["process_virtual_memory_bytes", "gauge"], ["process_open_fds", "gauge"], ["process_max_fds", "gauge"],
    ["process_start_time_seconds", "gauge"]]) {
    assert.match(text, new RegExp(`^# TYPE ${name} ${type}$`, "m"), name);
    assert.ok(Number.isFinite(value(m, name)), `${name} present`);
  }
  assert.ok(value(m, "process_cpu_seconds_total") > 0);
  assert.ok(value(m, "process_resident_memory_bytes") > 1 << 20, "RSS above 1 MiB");
  assert.ok(value(m, "process_virtual_memory_bytes") >= value(m, "process_resident_memory_bytes"));
  assert.ok(value(m, "process_open_fds") >= 4 && value(m, "process_open_fds") <= value(m, "process_max_fds"));
  const start = value(m, "process_start_time_seconds");
  assert.ok(Math.abs(start - Date.now() / 1000) < 120, `start time ${start} is about now`);
  const ver = (await runSluice(["--version"])).stdout.trim().split(" ")[1];
  assert.equal(value(m, "sluice_build_info", { version: ver }), 1, `sluice_build_info{version="${ver}"}`);
});

test("with API listeners of their own, each server's /metrics (on its API port) has only its own series", async () => {
  const two = await startServer(`
return { servers = {
  a = { host = "127.0.0.1", port = 0, api = { host = "127.0.0.1", port = 0 },
        namespaces = { { path = "/feed", topics = { "prices" } } } },
  b = { host = "127.0.0.1", port = 0, api = { host = "127.0.0.1", port = 0 },
        namespaces = { { path = "/feed", topics = { "prices" } } } },
} }`, { servers: 2 });
  try {
    await two.waitLog(/server "b" API, \/metrics and status page on http/);
    const api = (name) => Number(new RegExp(`server "${name}" API, /metrics and status page on http://127\\.0\\.0\\.1:(\\d+)/`)
      .exec(two.stderr())[1]);
    const s = await connected(client(`http://127.0.0.1:${two.ports[0]}/feed`, { transports: ["websocket"] }));
    try {
      const a = exposition(await scrape(api("a")));
      const b = exposition(await scrape(api("b")));
      assert.equal(value(a, "streamfence_connections_total", { namespace: "/feed" }), 1);
      assert.equal(value(b, "streamfence_connections_total", { namespace: "/feed" }), 0);
      assert.equal(value(b, "sluice_build_info", {}), 1);
    } finally {
      closeAll(s);
    }
  } finally {
    assertCleanExit(await two.stop());
  }
});

test("server exits cleanly", async () => {
  assertCleanExit(await srv.stop());
});
