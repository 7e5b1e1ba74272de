// grafana-dashboard.test.mjs - examples/grafana/sluice.json only queries what Sluice exports
// (issue 16, item 3): the dashboard JSON is parsed, the metric names are extracted from every
// PromQL expression (panel targets, template variables, annotations), a gateway runs with
// traffic (subscribers, publishes, an overflow, a Lua hook) and every name must be a sample
// name of its /metrics.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { ROOT, startServer, assertCleanExit, client, connected, closeAll, publish, api, Inbox, MODES } from "./helpers.mjs";

const DASHBOARD = path.join(ROOT, "examples/grafana/sluice.json");

const NOT_METRICS = new Set(["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
  "unless", "offset", "inf", "nan"]);

// metricNames: the metric names a PromQL expression reads. Strings, label matchers, range
// selectors, Grafana variables and grouping clauses are removed first; what is left that is
// an identifier not followed by "(" (a function) nor a keyword is a metric name.
export function metricNames(expr) {
  const e = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, " ")
    .replace(/\[[^\]]*\]/g, " ")
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ")
    .replace(/\$\{[^}]*\}|\$\w+/g, " ");
  const out = [];
  for (const m of e.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)) {
    if (m[2] || NOT_METRICS.has(m[1].toLowerCase())) continue;
    out.push(m[1]);
  }
  return out;
}

// expressions: every PromQL expression of a dashboard, with where it is.
function expressions(d) {
  const out = [];
  const walk = (panels) => {
    for (const p of panels || []) {
      for (const t of p.targets || []) if (t.expr) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
      walk(p.panels);
    }
  };
  walk(d.panels);
  for (const v of d.templating?.list || []) {
    const q = typeof v.query === "string" ? v.query : v.query?.query;
    if (v.type !== "query" || !q) continue;
    // label_values(metric{...}, label): only the first argument names a metric
    const m = /^\s*label_values\(\s*([^,]+),/.exec(q);
    out.push({ where: `variable $${v.name}`, expr: m ? m[1] : q });
  }
  for (const a of d.annotations?.list || []) if (a.expr) out.push({ where: `annotation "${a.name}"`, expr: a.expr });
  return out;
}

test("metricNames reads PromQL as intended", () => {
  assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, hook) (rate(x_bucket{job=~"$job",a="b(c)"}[$__rate_interval])))'), ["x_bucket"]);
  assert.deepEqual(metricNames("sum(rate(a_total[5m])) / sum without (x) (b) and on (i) c offset 5m"), ["a_total", "b", "c"]);
  assert.deepEqual(metricNames("time() - max(process_start_time_seconds)"), ["process_start_time_seconds"]);
});

const CONFIG = `
return { servers = { main = {
  host = "127.0.0.1", port = 0,
  namespaces = {
    { path = "/feed", topics = { "prices" }, route = function(msg) return true end },
    { path = "/tiny", topics = { "t" }, maxQueuedBytesPerClient = 10 },
  },
} } }
`;

test("every metric the Grafana dashboard queries is exported by a running gateway with traffic", async () => {
  const dash = JSON.parse(readFileSync(DASHBOARD, "utf8"));
  const exprs = expressions(dash);
  assert.ok(exprs.length >= 30, `found ${exprs.length} expressions`);
  const srv = await startServer(CONFIG);
  const socks = [];
  try {
    const s = await connected(client(`${srv.url}/feed`, MODES.websocket));
    const t = await connected(client(`${srv.url}/tiny`, MODES.websocket));
    socks.push(s, t);
    const prices = new Inbox(s, "prices");
    await s.timeout(5000).emitWithAck("subscribe", { topic: "prices" });
    await t.timeout(5000).emitWithAck("subscribe", { topic: "t" });
    for (let i = 0; i < 40; i++) await publish(srv.port, [{ namespace: "/feed", topic: "prices", payload: { i } }]);
    await prices.next();
    await publish(srv.port, [{ namespace: "/tiny", topic: "t", payload: { big: "x".repeat(100) } }]); // an overflow
    assert.equal((await api(srv.port, { namespace: "/feed", topic: "nope", payload: 1 })).status, 404);
    const text = await (await fetch(`${srv.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const exported = new Set(text.split("\n").filter((l) => l && l[0] !== "#").map((l) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)[0]));
    const missing = [];
    const names = new Set();
    for (const { where, expr } of exprs) {
      const ns = metricNames(expr);
      assert.ok(ns.length > 0, `${where} names no metric: ${expr}`);
      for (const n of ns) {
        names.add(n);
        if (!exported.has(n)) missing.push(`${n} (${where})`);
      }
    }
    assert.deepEqual(missing, [], `queried by the dashboard but not in /metrics:\n${missing.join("\n")}`);
    assert.ok(names.size >= 25, `the dashboard covers ${names.size} metrics: ${[...names].join(", ")}`);
  } finally {
    closeAll(...socks);
    assertCleanExit(await srv.stop());
  }
});
