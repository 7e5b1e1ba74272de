// browser.test.mjs - a real browser against Sluice: Debian's chromium, headless, loads
// spec/e2e/browser/index.html from a tiny Node static server on another 127.0.0.1 port (so
// every Sluice request is cross-origin and needs Sluice's CORS headers, configured with the
// server key cors = { origins = { <the page's origin> } }), the page uses the
// official browser bundle socket.io-client/dist/socket.io.min.js with default options
// (polling first, then the upgrade to websocket), subscribes to a topic fed by a Lua timer,
// and writes each delivery and the transport name into the DOM. The test reads the DOM with
// --dump-dom and asserts at least 3 deliveries and transport "websocket".
//
// chromium must be installed (.ci/deps.sh installs it); without it this test fails with a
// message saying so, it is never skipped silently.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { startServer, assertCleanExit, withTimeout } from "./helpers.mjs";
import { serveStatic } from "./browser/serve.mjs";

// The page's origin is the static server's: it is allowed by cors.origins (exact match).
const config = (origin) => `
local n = 0
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      cors = { origins = { "${origin}" } },
      onStart = function()
        sluice.every(50, function()
          n = n + 1
          sluice.publish("/feed", "ticks", { n = n, px = 100 + n / 100 })
        end)
      end,
      namespaces = {
        { path = "/feed", topics = { "ticks" }, deliveryMode = "BEST_EFFORT",
          overflowAction = "DROP_OLDEST", maxQueuedMessagesPerClient = 1000 },
      },
    },
  },
}
`;

function findChromium() {
  for (const name of [process.env.CHROMIUM_BIN, "chromium", "chromium-browser"].filter(Boolean)) {
    const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

// runChromium: headless chromium, --dump-dom of url; resolves {code, stdout, stderr}.
function runChromium(bin, url, ms = 40000) {
  const profile = mkdtempSync(path.join(tmpdir(), "sluice-chromium-"));
  const args = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", `--user-data-dir=${profile}`, "--virtual-time-budget=8000",
    "--dump-dom", url,
  ];
  return new Promise((resolve, reject) => {
    const p = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    p.stdout.on("data", (d) => { stdout += d; });
    p.stderr.on("data", (d) => { stderr += d; });
    const t = setTimeout(() => { p.kill("SIGKILL"); }, ms);
    p.on("error", (e) => { clearTimeout(t); reject(e); });
    p.on("close", (code, signal) => {
      clearTimeout(t);
      try { rmSync(profile, { recursive: true, force: true }); } catch { /* */ }
      resolve({ code, signal, stdout, stderr });
    });
  });
}

let srv, web;
before(async () => {
  web = await serveStatic();
  srv = await startServer(config(web.url));
});
after(async () => {
  await web?.close();
  await srv?.stop();
});

test("chromium: the official browser bundle connects cross-origin, upgrades to websocket and receives deliveries", async () => {
  const bin = findChromium();
  assert.ok(bin, "chromium is not installed: run `apt-get install -y chromium` (.ci/deps.sh installs it) " +
    "or set CHROMIUM_BIN; the browser check cannot run without it");
  const page = `${web.url}/?sluice=${encodeURIComponent(srv.url)}&ns=${encodeURIComponent("/feed")}&topic=ticks`;
  const r = await runChromium(bin, page);
  assert.ok(web.requests.includes("/"), `chromium never requested the page; exit ${r.code} ${r.signal}\n${r.stderr.slice(-2000)}`);
  assert.ok(web.requests.includes("/socket.io.min.js"), "the page did not load the socket.io-client bundle");
  const dom = r.stdout;
  assert.match(dom, /<span id="status">/, `no DOM dumped (exit ${r.code} ${r.signal}); stderr:\n${r.stderr.slice(-2000)}`);
  const why = () => `\nnotes: ${field("notes")}\nstatic server: ${web.log.join(" | ")}` +
    `\nDOM body: ${((/<body>([\s\S]*?)<script>/.exec(dom) || [])[1] || "").slice(0, 3000)}`;
  const field = (id) => (new RegExp(`<span id="${id}">([^<]*)</span>`).exec(dom) || [])[1];
  const errors = [...dom.matchAll(/<ul id="errors">([\s\S]*?)<\/ul>/g)].map((m) => m[1]).join("");
  assert.equal(errors.replace(/\s/g, ""), "", `the page reported errors: ${errors}`);
  const deliveries = [...dom.matchAll(/<li class="delivery" data-transport="(\w+)">([^<]*)<\/li>/g)]
    .map((m) => ({ transport: m[1], payload: JSON.parse(m[2].replace(/&quot;/g, '"').replace(/&amp;/g, "&")) }));
  assert.ok(deliveries.length >= 3, `expected >= 3 deliveries in the DOM, got ${deliveries.length} ` +
    `(status ${field("status")}, transport ${field("transport")})${why()}`);
  assert.equal(field("transport"), "websocket", `transport in the DOM (status ${field("status")})${why()}`);
  assert.ok(deliveries.some((d) => d.transport === "websocket"), "some deliveries arrived over the websocket");
  assert.equal(field("history"), "polling,websocket", `default options: polling first, then the upgrade${why()}`);
  assert.equal(field("status"), "done", why());
  // the ticks arrive in publish order
  const ns = deliveries.map((d) => d.payload.n);
  for (let i = 1; i < ns.length; i++) assert.ok(ns[i] > ns[i - 1], `deliveries in order: ${ns.join(",")}`);
});

test("the cross-origin polling handshake carries CORS headers for the page's origin", async () => {
  const res = await withTimeout(fetch(`${srv.url}/socket.io/?EIO=4&transport=polling`, {
    headers: { Origin: web.url },
  }), 5000, "polling handshake");
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("access-control-allow-origin"), web.url);
  await res.text();
});

test("server exits cleanly", async () => {
  assertCleanExit(await srv.stop());
});
