// hooks-route.test.mjs - the namespace `route(msg)` hook (issue 4, DESIGN.md §2/§3.2) seen by
// real socket.io-client v4 clients over websocket and polling+upgrade: false drops (and counts
// sluice_route_dropped_total), {payload} rewrites, {topic}/{topics} redirect, {to} restricts the
// recipients, msg.source/msg.clientId tell api / lua / client publishes apart, a hook error or
// an infinite loop delivers the message as is (documented default) and counts
// sluice_lua_errors_total, and the gateway keeps serving.
//
// "Not delivered" is asserted without sleeping: a lane is FIFO per (client, topic), so after
// the message X that must not arrive, a message Y on the same topic that must arrive is
// published; had X been delivered, it would have come first.
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, client, connected, Inbox, closeAll, MODES, api, publish,
} from "./helpers.mjs";

const CONFIG = `
local json = sluice.json
local function app_event(client, event, args, ack)
  if event == "ping" then
    if ack then ack("pong") end
  elseif event == "luapub" then
    local id = sluice.publish(args[1], args[2], args[3])
    if ack then ack(id) end
  end
end

local function route(msg)
  local t = msg.topic
  if t == "cond" then
    local p = msg.payload
    if type(p) == "table" and p.drop then return false end
    return nil
  elseif t == "rewrite" then
    return { payload = { rewritten = true, was = msg.payload, topic = msg.topic, ns = msg.namespace } }
  elseif t == "redirect" then
    if msg.payload.stay then return true end
    return { topic = "other" }
  elseif t == "fanout" then
    if msg.payload.stay then return nil end
    return { topics = { "a", "b" }, payload = { fanned = msg.payload.n } }
  elseif t == "only" then
    local p = msg.payload
    if p.target then return { to = { p.target } } end
    return nil
  elseif t == "src" then
    return { payload = { source = msg.source, clientId = msg.clientId or json.null,
                         orig = msg.payload } }
  elseif t == "err" then
    local p = msg.payload
    if p.boom then error("route boom " .. tostring(p.n)) end
    return nil
  elseif t == "loop" then
    if msg.payload.spin then while true do end end
    return nil
  elseif t == "weird" then
    return 42
  end
  return nil
end

return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      namespaces = {
        { path = "/r", topics = { "cond", "rewrite", "redirect", "other", "fanout", "a", "b",
                                   "only", "src", "err", "loop", "weird", "plain" },
          deliveryMode = "BEST_EFFORT", clientPublish = true, onEvent = app_event,
          route = route },
        { path = "/plain", topics = { "cond" }, deliveryMode = "BEST_EFFORT",
          onEvent = app_event },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

// metricsText / metricValue: GET /metrics and read one sample (labels matched exactly).
async function metricsText(port) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return res.text();
}
async function metricValue(port, name, labels = {}) {
  const text = await metricsText(port);
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(",");
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = (m[2] || "").split(",").filter(Boolean).sort().join(",");
    if (got === want) return Number(m[3]);
  }
  throw new Error(`metric ${name}${JSON.stringify(labels)} not found in /metrics`);
}

let seq = 0;
const mark = (extra = {}) => ({ n: ++seq, ...extra });
const pub = (topic, payload, ns = "/r") => publish(srv.port, { namespace: ns, topic, payload });

for (const mode of ["websocket", "polling+upgrade"]) {
  describe(`route hook (${mode})`, () => {
    const open = async (ns = "/r") => connected(client(`${srv.url}${ns}`, MODES[mode]));
    const sub = async (s, topic) => {
      assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic }), { ok: true });
    };

    it("return false drops (nobody receives it) and counts sluice_route_dropped_total", async () => {
      const s = await open();
      const other = await open("/plain"); // same topic name in a namespace without a hook
      try {
        const box = new Inbox(s, "cond");
        const obox = new Inbox(other, "cond");
        await sub(s, "cond");
        await sub(other, "cond");
        const before = await metricValue(srv.port, "sluice_route_dropped_total", { namespace: "/r" });
        const x = mark({ drop: true });
        const ids = await pub("cond", x);
        assert.equal(ids.length, 1, "a dropped publish is still answered with its id");
        const y = mark({ drop: false });
        await pub("cond", y);
        assert.deepEqual(await box.next(), [y], "the dropped message must not arrive before y");
        assert.equal(await metricValue(srv.port, "sluice_route_dropped_total", { namespace: "/r" }), before + 1);
        // a namespace without a route hook delivers a payload with drop:true unchanged
        await pub("cond", x, "/plain");
        assert.deepEqual(await obox.next(), [x]);
        assert.equal(await metricValue(srv.port, "sluice_route_dropped_total", { namespace: "/plain" }), 0);
      } finally { closeAll(s, other); }
    });

    it("return {payload = ...} rewrites what subscribers receive", async () => {
      const s = await open();
      try {
        const box = new Inbox(s, "rewrite");
        await sub(s, "rewrite");
        const x = mark({ text: "hello €" });
        await pub("rewrite", x);
        assert.deepEqual(await box.next(), [{ rewritten: true, was: x, topic: "rewrite", ns: "/r" }]);
      } finally { closeAll(s); }
    });

    it("return {topic = \"other\"} redirects: the original topic's subscribers get nothing", async () => {
      const s = await open();
      try {
        const orig = new Inbox(s, "redirect");
        const moved = new Inbox(s, "other");
        await sub(s, "redirect");
        await sub(s, "other");
        const x = mark();
        await pub("redirect", x);
        assert.deepEqual(await moved.next(), [x], "redirected unchanged to topic 'other'");
        const y = mark({ stay: true });
        await pub("redirect", y);
        assert.deepEqual(await orig.next(), [y], "x must not also reach 'redirect' subscribers");
      } finally { closeAll(s); }
    });

    it("return {topics = {a, b}, payload} fans out to several topics with the new payload", async () => {
      const s = await open();
      const onlyA = await open();
      try {
        const fa = new Inbox(s, "a"), fb = new Inbox(s, "b"), ff = new Inbox(s, "fanout");
        const oa = new Inbox(onlyA, "a"), ob = new Inbox(onlyA, "b");
        await sub(s, "a"); await sub(s, "b"); await sub(s, "fanout");
        await sub(onlyA, "a");
        const x = mark();
        await pub("fanout", x);
        assert.deepEqual(await fa.next(), [{ fanned: x.n }]);
        assert.deepEqual(await fb.next(), [{ fanned: x.n }]);
        assert.deepEqual(await oa.next(), [{ fanned: x.n }], "a subscriber of 'a' only gets the 'a' copy");
        const y = mark({ stay: true });
        await pub("fanout", y);
        assert.deepEqual(await ff.next(), [y], "x must not reach 'fanout' subscribers");
        assert.equal(ob.items.length, 0, "onlyA is not subscribed to 'b'");
      } finally { closeAll(s, onlyA); }
    });

    it("return {to = {clientId}} restricts the recipients", async () => {
      const a = await open(), b = await open();
      try {
        const ba = new Inbox(a, "only"), bb = new Inbox(b, "only");
        await sub(a, "only");
        await sub(b, "only");
        const x = mark({ target: a.id });
        await pub("only", x);
        assert.deepEqual(await ba.next(), [x]);
        const y = mark();
        await pub("only", y);
        assert.deepEqual(await bb.next(), [y], "b must not have received x (only a)");
        assert.deepEqual(await ba.next(), [y]);
      } finally { closeAll(a, b); }
    });

    it("msg.source is api / lua / client (with msg.clientId for client publishes)", async () => {
      const s = await open();
      const pubber = await open();
      try {
        const box = new Inbox(s, "src");
        await sub(s, "src");
        const x = mark();
        await pub("src", x);
        assert.deepEqual(await box.next(), [{ source: "api", clientId: null, orig: x }]);
        const y = mark();
        const id = await pubber.timeout(5000).emitWithAck("luapub", "/r", "src", y);
        assert.match(id, /^msg-/);
        assert.deepEqual(await box.next(), [{ source: "lua", clientId: null, orig: y }]);
        const z = mark();
        const r = await pubber.timeout(5000).emitWithAck("publish", { topic: "src", payload: z });
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.deepEqual(await box.next(), [{ source: "client", clientId: pubber.id, orig: z }]);
      } finally { closeAll(s, pubber); }
    });

    it("a hook that raises delivers as is, logs the error and counts sluice_lua_errors_total", async () => {
      const s = await open();
      try {
        const box = new Inbox(s, "err");
        await sub(s, "err");
        const before = await metricValue(srv.port, "sluice_lua_errors_total");
        const x = mark({ boom: true });
        await pub("err", x);
        assert.deepEqual(await box.next(), [x], "delivered unchanged");
        assert.ok(await metricValue(srv.port, "sluice_lua_errors_total") >= before + 1);
        await srv.waitLog(new RegExp(`lua: route: \\S*config\\.lua:\\d+: route boom ${x.n}`));
        // a result of the wrong type (a number) is also delivered as is and counted
        const before2 = await metricValue(srv.port, "sluice_lua_errors_total");
        const w = new Inbox(s, "weird");
        await sub(s, "weird");
        const y = mark();
        await pub("weird", y);
        assert.deepEqual(await w.next(), [y]);
        assert.ok(await metricValue(srv.port, "sluice_lua_errors_total") >= before2 + 1);
      } finally { closeAll(s); }
    });

    it("an infinite loop in route is stopped: the message is delivered as is and the gateway keeps serving", async () => {
      const s = await open();
      try {
        const box = new Inbox(s, "loop");
        const plain = new Inbox(s, "plain");
        await sub(s, "loop");
        await sub(s, "plain");
        const before = await metricValue(srv.port, "sluice_lua_errors_total");
        const x = mark({ spin: true });
        const t0 = Date.now();
        const r = await api(srv.port, { namespace: "/r", topic: "loop", payload: x });
        assert.equal(r.status, 200, r.text);
        assert.ok(Date.now() - t0 < 5000, `the runaway hook was stopped within 5 s (took ${Date.now() - t0} ms)`);
        assert.deepEqual(await box.next(), [x], "delivered as is after the hook was stopped");
        assert.ok(await metricValue(srv.port, "sluice_lua_errors_total") >= before + 1);
        await srv.waitLog(/instruction limit exceeded/);
        // still serving: the hook works normally on the next publish, other topics too
        const y = mark();
        await pub("loop", y);
        assert.deepEqual(await box.next(), [y]);
        const z = mark();
        await pub("plain", z);
        assert.deepEqual(await plain.next(), [z]);
        assert.equal(await s.timeout(5000).emitWithAck("ping"), "pong");
      } finally { closeAll(s); }
    });
  });
}

test("sluice_lua_hook_duration_seconds and /api/stats luaHooks time one route call in 16", async () => {
  const count = () => metricValue(srv.port, "sluice_lua_hook_duration_seconds_count", { hook: "route" });
  const before = await count();
  // 48 publishes through the route hook (an array publish is one request, one call per message)
  await publish(srv.port, Array.from({ length: 48 }, () => ({ namespace: "/r", topic: "plain", payload: mark() })));
  const after = await count();
  assert.equal(after - before, 3, "48 calls, one in 16 timed");
  // a well-formed Prometheus histogram: cumulative buckets ending in +Inf == _count, a positive _sum
  const text = await metricsText(srv.port);
  assert.match(text, /^# TYPE sluice_lua_hook_duration_seconds histogram$/m);
  const buckets = [...text.matchAll(/^sluice_lua_hook_duration_seconds_bucket\{hook="route",le="([^"]+)"\} (\d+)$/gm)]
    .map((m) => [m[1], Number(m[2])]);
  assert.ok(buckets.length >= 5, text);
  assert.equal(buckets.at(-1)[0], "+Inf");
  assert.equal(buckets.at(-1)[1], after);
  for (let i = 1; i < buckets.length; i++) {
    assert.ok(buckets[i][1] >= buckets[i - 1][1], `cumulative: ${JSON.stringify(buckets)}`);
    if (buckets[i][0] !== "+Inf") assert.ok(Number(buckets[i][0]) > Number(buckets[i - 1][0]));
  }
  assert.ok(await metricValue(srv.port, "sluice_lua_hook_duration_seconds_sum", { hook: "route" }) > 0);
  // hooks the config does not set are listed with zero samples
  assert.equal(await metricValue(srv.port, "sluice_lua_hook_duration_seconds_count", { hook: "coalesceKey" }), 0);
  // the same samples in /api/stats, with quantiles in ns
  const res = await fetch(`http://127.0.0.1:${srv.port}/api/stats`, { signal: AbortSignal.timeout(5000) });
  const stats = await res.json();
  const r = stats.luaHooks.route;
  assert.equal(stats.luaHooks.sampleEvery, 16);
  assert.ok(stats.luaHooks.clockOverheadNs >= 0);
  assert.equal(r.samples, after);
  // ordered quantiles (null: above 1 s; the runaway-loop test above may have left such a sample)
  const q = ["p10Ns", "p50Ns", "p90Ns", "p99Ns"].map((k) => (r[k] === null ? Infinity : r[k]));
  assert.ok(q[0] > 0 && q[0] <= q[1] && q[1] <= q[2] && q[2] <= q[3], JSON.stringify(r));
  assert.ok(r.meanNs > 0);
  assert.equal(stats.luaHooks.coalesceKey, undefined, "no samples, no entry");
});

test("server exits cleanly", async () => {
  assertCleanExit(await srv.stop());
});
