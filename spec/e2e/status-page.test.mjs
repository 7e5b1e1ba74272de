// status-page.test.mjs - the status page an operator keeps open (issue 16, item 4), in a real
// browser: Debian's headless chromium, driven over the DevTools protocol (so the test reads
// the live DOM twice, a few seconds apart, as a person looking at the page would), against a
// running gateway with traffic: a Lua producer whose rate rises every second, subscribers,
// an AT_LEAST_ONCE client that never acks, a hook that is timed and a Lua error. The page
// must show per-topic rates that change, in-flight and queue depth, Lua errors and hook
// timings, reloads, the clients (slowest first) on demand, no "NaN" anywhere; with apiToken
// set it asks for the token and shows the data once it is typed in.
//
// chromium must be installed (.ci/deps.sh installs it); without it the test fails saying so.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import WebSocket from "ws";
import { startServer, assertCleanExit, client, connected, closeAll, sleep, withTimeout, MODES } from "./helpers.mjs";

const config = (token) => `
local tick = 0
return { servers = { main = {
  host = "127.0.0.1", port = 0, ${token ? `apiToken = "${token}",` : ""}
  onStart = function()
    sluice.every(50, function()
      tick = tick + 1
      -- the rate rises by 20 messages/s every second
      for i = 1, 1 + math.floor(tick / 20) do sluice.publish("/feed", "prices", { px = tick, i = i }) end
    end)
    sluice.every(500, function() error("boom") end)
  end,
  namespaces = {
    { path = "/feed", topics = { "prices", "news" },
      route = function(msg) return true end },
    { path = "/alo", topics = { "orders" }, deliveryMode = "AT_LEAST_ONCE", overflowAction = "REJECT_NEW",
      maxQueuedMessagesPerClient = 64, maxInFlight = 2, ackTimeoutMs = 60000, maxRetries = 1 },
  },
} } }
`;

function findChromium() {
  for (const name of [process.env.CHROMIUM_BIN, "chromium", "chromium-browser"].filter(Boolean)) {
    const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

// Browser: headless chromium with the DevTools protocol on a WebSocket; one page.
class Browser {
  static async launch() {
    const bin = findChromium();
    assert.ok(bin, "chromium is not installed: run `apt-get install -y chromium` (.ci/deps.sh installs it) " +
      "or set CHROMIUM_BIN; the status page check cannot run without it");
    const b = new Browser();
    b.profile = mkdtempSync(path.join(tmpdir(), "sluice-chromium-"));
    b.proc = spawn(bin, [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--remote-debugging-port=0",
      `--user-data-dir=${b.profile}`, "about:blank",
    ], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    const url = await withTimeout(new Promise((resolve, reject) => {
      b.proc.stderr.on("data", (d) => {
        err += d;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m) resolve(m[1]);
      });
      b.proc.on("close", (code) => reject(new Error(`chromium exited (${code}): ${err.slice(-2000)}`)));
    }), 20000, "chromium's DevTools endpoint");
    b.ws = new WebSocket(url, { perMessageDeflate: false });
    await new Promise((resolve, reject) => { b.ws.once("open", resolve); b.ws.once("error", reject); });
    b.id = 0;
    b.pending = new Map();
    b.ws.on("message", (data) => {
      const msg = JSON.parse(data);
      const p = msg.id && b.pending.get(msg.id);
      if (!p) return;
      b.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(JSON.stringify(msg.error)));
      else p.resolve(msg.result);
    });
    return b;
  }
  send(method, params = {}, sessionId) {
    const id = ++this.id;
    this.ws.send(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }));
    return withTimeout(new Promise((resolve, reject) => this.pending.set(id, { resolve, reject })), 15000, method);
  }
  async open(url) {
    const { targetId } = await this.send("Target.createTarget", { url });
    const { sessionId } = await this.send("Target.attachToTarget", { targetId, flatten: true });
    this.session = sessionId;
  }
  // eval: the value of a JavaScript expression in the page.
  async eval(expression) {
    const r = await this.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true }, this.session);
    if (r.exceptionDetails) throw new Error(`page: ${JSON.stringify(r.exceptionDetails).slice(0, 500)}`);
    return r.result.value;
  }
  // until: polls expression until pred(value) holds; resolves with the value.
  async until(expression, pred, ms = 10000, what = expression) {
    const deadline = Date.now() + ms;
    let v;
    for (;;) {
      try {
        v = await this.eval(expression);
        if (pred(v)) return v;
      } catch (e) {
        v = e.message; // the page is still loading
      }
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last value ${JSON.stringify(v)}`);
      await sleep(100);
    }
  }
  async close() {
    try { this.ws?.close(); } catch { /* */ }
    this.proc.kill("SIGKILL");
    await new Promise((r) => (this.proc.exitCode !== null ? r() : this.proc.once("close", r)));
    rmSync(this.profile, { recursive: true, force: true });
  }
}

const CELL = (key, cls) => `document.querySelector('tr[data-topic="${key}"] .${cls}')?.textContent`;

let browser;
before(async () => { browser = await Browser.launch(); });
after(async () => { await browser?.close(); });

test("status page: live per-topic rates that change, queue depth and in-flight, Lua errors, hook timings, slowest clients", async () => {
  const srv = await startServer(config());
  const subs = [];
  try {
    for (const mode of [MODES.websocket, MODES["polling-only"]]) {
      const s = await connected(client(`${srv.url}/feed`, mode));
      await s.timeout(5000).emitWithAck("subscribe", { topic: "prices" });
      subs.push(s);
    }
    const slow = await connected(client(`${srv.url}/alo`, MODES.websocket)); // never acks
    await slow.timeout(5000).emitWithAck("subscribe", { topic: "orders" });
    subs.push(slow);
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${srv.url}/api/publish`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ namespace: "/alo", topic: "orders", payload: { i } }),
      });
      assert.equal(r.status, 200);
    }
    await browser.open(`${srv.url}/`);
    const key = "main /feed prices";
    const first = Number(await browser.until(CELL(key, "published"), (v) => Number(v) > 0, 10000, "a published rate"));
    assert.ok(Number(await browser.eval(CELL(key, "delivered"))) > 0, "delivered/s shown");
    // the page keeps polling: seconds later the rate is a different number (the producer speeds up)
    await sleep(3000);
    const later = Number(await browser.until(CELL(key, "published"), (v) => Number(v) > 0 && Number(v) !== first, 10000,
      `a published rate different from ${first}`));
    assert.ok(later > first, `the rate rose: ${first}/s, then ${later}/s`);
    assert.equal(await browser.eval(CELL("main /alo orders", "inflight")), "2", "in flight (maxInFlight 2, never acked)");
    assert.equal(await browser.eval(CELL("main /alo orders", "queued")), "3", "queue depth");
    assert.equal(await browser.eval(`document.querySelector('tr[data-ns="main /feed"] .clients').textContent`), "2 clients");
    const nsRate = Number(await browser.eval(`document.querySelector('tr[data-ns="main /feed"] .published').textContent`));
    assert.ok(nsRate > 0, `the namespace row sums its topics' rates: ${nsRate}/s`);
    assert.equal(await browser.eval(`document.querySelector('tr[data-ns="main /alo"] .inflight').textContent`), "2");
    assert.ok(Number(await browser.eval(`document.getElementById("luaErrors").textContent`)) >= 1, "Lua errors shown");
    assert.ok(await browser.eval(`!!document.querySelector('#hooks tr[data-hook="route"]')`), "route hook timing shown");
    assert.match(await browser.eval(`document.getElementById("reloads").textContent`), /^0 ok, 0 failed/);
    assert.match(await browser.eval(`document.getElementById("uptime").textContent`), /^\d+s$/);
    assert.equal(await browser.eval(`document.getElementById("state").textContent`), "serving");
    // per-client detail on demand, the slowest first
    await browser.eval(`document.getElementById("clientsBox").open = true`);
    const rows = await browser.until(
      `[...document.querySelectorAll('#clients tbody tr')].map((r) => [r.dataset.client, r.querySelector('.backlog').textContent])`,
      (v) => v.length === 3, 10000, "three client rows");
    assert.equal(rows[0][0], slow.id, `the slowest client first: ${JSON.stringify(rows)}`);
    assert.equal(rows[0][1], "5");
    const text = await browser.eval("document.body.innerText");
    assert.doesNotMatch(text, /NaN|undefined/, text);
  } finally {
    closeAll(...subs);
    assertCleanExit(await srv.stop());
  }
});

test("status page with apiToken: asks for the token, then shows the data (no NaN)", async () => {
  const srv = await startServer(config("s3cret"));
  try {
    await browser.open(`${srv.url}/`);
    await browser.until(`document.getElementById("auth").hidden`, (v) => v === false, 10000, "the token field");
    assert.equal(await browser.eval(`document.getElementById("state").textContent`), "API token needed");
    assert.doesNotMatch(await browser.eval("document.body.innerText"), /NaN/);
    await browser.eval(`document.getElementById("token").value = "wrong"; document.getElementById("auth").requestSubmit()`);
    await browser.until(`document.getElementById("authMsg").textContent`, (v) => /refused/.test(v), 10000, "refusal");
    await browser.eval(`document.getElementById("token").value = "s3cret"; document.getElementById("auth").requestSubmit()`);
    await browser.until(CELL("main /feed prices", "published"), (v) => Number(v) > 0, 10000, "a rate once the token is in");
    assert.equal(await browser.eval(`document.getElementById("state").textContent`), "serving");
    assert.doesNotMatch(await browser.eval("document.body.innerText"), /NaN/);
  } finally {
    assertCleanExit(await srv.stop());
  }
});
