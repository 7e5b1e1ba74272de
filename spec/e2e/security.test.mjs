// security.test.mjs - issue 12's probes, rerun (everything but TLS): the HTTP API on the client
// port and on a listener of its own (TCP and Unix socket), its rules without apiToken
// (forwarding headers, loopback, Origin, Host, Content-Type) and with it, every refusal a JSON
// error that names its rule and is counted; CORS as socket.io's `cors` option (no headers
// without it; exact origins and "*." patterns with it; credentials only when set), the Origin
// check on polling and on the WebSocket upgrade, and configs with unknown api/cors keys.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { statSync, existsSync } from "node:fs";
import WebSocket from "ws";
import {
  startServer, assertCleanExit, runSluice, writeConfig, tmpDir, client, connected, connectError,
  closeAll, MODES, withTimeout,
} from "./helpers.mjs";

const NS = `namespaces = { { path = "/feed", topics = { "prices" } } }`;

// req: one HTTP request with exactly these headers (node:http sends no Origin; Host is set
// from the target unless given). target: {port} or {socketPath}. Resolves {status, headers,
// text, body}.
function req(target, method, urlPath, { headers = {}, body } = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const r = http.request({ host: "127.0.0.1", ...target, method, path: urlPath, headers, agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { text += d; });
      res.on("end", () => {
        let json = null;
        try { json = JSON.parse(text); } catch { /* not JSON */ }
        resolve({ status: res.statusCode, headers: res.headers, text, body: json });
      });
    });
    r.on("error", reject);
    if (body !== undefined) r.write(body);
    r.end();
  }), 5000, `${method} ${urlPath}`);
}

const JSON_CT = { "content-type": "application/json" };
const PUBLISH = JSON.stringify({ namespace: "/feed", topic: "prices", payload: { px: 1 } });

function assertRefused(r, status, code, rule) {
  assert.equal(r.status, status, `status: ${r.status} ${r.text}`);
  assert.match(r.headers["content-type"] || "", /application\/json/);
  assert.equal(r.body?.error?.code, code, r.text);
  assert.match(r.body.error.message, rule, r.text);
}

async function refusedCount(target, reason) {
  const r = await req(target, "GET", "/metrics");
  assert.equal(r.status, 200, r.text);
  const m = new RegExp(`^sluice_api_refused_total\\{reason="${reason}"\\} (\\d+)$`, "m").exec(r.text);
  assert.ok(m, `sluice_api_refused_total{reason="${reason}"} in /metrics`);
  return Number(m[1]);
}

// apiPort: the TCP port of the API listener, from the log line.
function apiPort(srv) {
  const m = /API, \/metrics and status page on http:\/\/127\.0\.0\.1:(\d+)\//.exec(srv.stderr());
  assert.ok(m, `no API listener line in:\n${srv.stderr()}`);
  return Number(m[1]);
}

// forwarder: a local TCP forwarder to port; addXff inserts an X-Forwarded-For header into
// the request head, as an HTTP reverse proxy (nginx, Caddy) does.
function forwarder(port, { addXff = false } = {}) {
  return new Promise((resolve) => {
    const s = net.createServer((inc) => {
      const out = net.connect(port, "127.0.0.1");
      let first = true;
      inc.on("data", (d) => {
        if (first && addXff) {
          const t = d.toString("latin1");
          d = Buffer.from(t.replace("\r\n", "\r\nX-Forwarded-For: 203.0.113.7\r\n"), "latin1");
        }
        first = false;
        out.write(d);
      });
      out.pipe(inc);
      inc.on("error", () => out.destroy());
      out.on("error", () => inc.destroy());
      inc.on("end", () => out.end());
    });
    s.listen(0, "127.0.0.1", () => resolve({ port: s.address().port, close: () => new Promise((r) => s.close(r)) }));
  });
}

describe("the API on the client port (no api key), without apiToken", () => {
  let srv, T;
  before(async () => {
    srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0, ${NS} } } }`);
    T = { port: srv.port };
  });
  after(async () => { await srv?.stop(); });

  it("a plain local JSON POST still publishes (200)", async () => {
    const r = await req(T, "POST", "/api/publish", { headers: JSON_CT, body: PUBLISH });
    assert.equal(r.status, 200, r.text);
  });

  for (const [h, v] of [["X-Forwarded-For", "203.0.113.7"], ["Forwarded", "for=203.0.113.7"], ["X-Real-IP", "203.0.113.7"]]) {
    it(`${h}: refused 403 PROXIED on /api/publish, /api/reload, /api/stats and /metrics`, async () => {
      const before = await refusedCount(T, "forwarded");
      for (const [m, p] of [["POST", "/api/publish"], ["POST", "/api/reload"], ["GET", "/api/stats"], ["GET", "/metrics"], ["GET", "/"]]) {
        const r = await req(T, m, p, { headers: { ...JSON_CT, [h]: v }, body: m === "POST" ? PUBLISH : undefined });
        assertRefused(r, 403, "PROXIED", new RegExp(h));
      }
      assert.equal(await refusedCount(T, "forwarded"), before + 5);
    });
  }

  it("through a local HTTP proxy (a forwarder adding X-Forwarded-For): reload, publish and stats refused", async () => {
    const fwd = await forwarder(srv.port, { addXff: true });
    try {
      for (const [m, p] of [["POST", "/api/reload"], ["POST", "/api/publish"], ["GET", "/api/stats"]]) {
        const r = await req({ port: fwd.port }, m, p, { headers: JSON_CT, body: m === "POST" ? PUBLISH : undefined });
        assertRefused(r, 403, "PROXIED", /proxy/);
      }
    } finally { await fwd.close(); }
  });

  it("the browser probe: text/plain POST with Origin evil and Host evil is refused", async () => {
    const r = await req(T, "POST", "/api/publish", {
      headers: { "content-type": "text/plain", origin: "https://evil.example", host: "evil" }, body: PUBLISH,
    });
    assert.ok([403, 415].includes(r.status), r.text);
    assert.ok(r.body?.error?.message, r.text);
  });

  it("a text/plain (or absent) Content-Type on a POST gets 415", async () => {
    const before = await refusedCount(T, "content_type");
    assertRefused(await req(T, "POST", "/api/publish", { headers: { "content-type": "text/plain" }, body: PUBLISH }),
      415, "UNSUPPORTED_MEDIA_TYPE", /Content-Type: application\/json/);
    assertRefused(await req(T, "POST", "/api/reload", {}), 415, "UNSUPPORTED_MEDIA_TYPE", /Content-Type/);
    assertRefused(await req(T, "POST", "/api/publish", { headers: { "content-type": "application/x-www-form-urlencoded" }, body: "a=1" }),
      415, "UNSUPPORTED_MEDIA_TYPE", /Content-Type/);
    assert.equal(await refusedCount(T, "content_type"), before + 3);
    const ok = await req(T, "POST", "/api/publish", { headers: { "content-type": "application/json; charset=utf-8" }, body: PUBLISH });
    assert.equal(ok.status, 200, ok.text);
  });

  it("Origin: https://evil.example gets 403 on the API, /metrics and the status page", async () => {
    const before = await refusedCount(T, "origin");
    for (const [m, p] of [["POST", "/api/publish"], ["GET", "/metrics"], ["GET", "/"], ["GET", "/api/stats"]]) {
      const r = await req(T, m, p, { headers: { ...JSON_CT, origin: "https://evil.example" }, body: m === "POST" ? PUBLISH : undefined });
      assertRefused(r, 403, "ORIGIN_REFUSED", /Origin/);
    }
    assert.equal(await refusedCount(T, "origin"), before + 4);
  });

  it("Host: evil gets 403 (DNS rebinding); IP literals and localhost are accepted", async () => {
    const before = await refusedCount(T, "host");
    for (const host of ["evil", "evil.example:80", "127.0.0.1.nip.io", "localhost.evil"]) {
      assertRefused(await req(T, "GET", "/api/stats", { headers: { host } }), 403, "HOST_REFUSED", /Host/);
    }
    assert.equal(await refusedCount(T, "host"), before + 4);
    for (const host of ["127.0.0.1", `127.0.0.1:${srv.port}`, "localhost", `LOCALHOST:${srv.port}`, "[::1]", `[::1]:${srv.port}`, "10.1.2.3"]) {
      const r = await req(T, "GET", "/api/stats", { headers: { host } });
      assert.equal(r.status, 200, `Host ${host}: ${r.text}`);
    }
  });

  it("/healthz, /readyz and the Engine.IO endpoint are not subject to the API rules", async () => {
    const h = { origin: "https://evil.example", host: "evil", "x-forwarded-for": "1.2.3.4" };
    assert.equal((await req(T, "GET", "/healthz", { headers: h })).status, 200);
    const ready = await req(T, "GET", "/readyz", { headers: h });
    assert.equal(ready.status, 200);
    assert.deepEqual(ready.body, { status: "ready" });
    assert.equal((await req(T, "GET", "/socket.io/?EIO=4&transport=polling", { headers: h })).status, 200);
    assert.equal((await req(T, "GET", "/nope", { headers: h })).status, 404);
  });

  it("server exits cleanly", async () => { assertCleanExit(await srv.stop()); });
});

describe("the API with apiToken", () => {
  let srv, T;
  before(async () => {
    srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0, apiToken = "s3cret-token", ${NS} } } }`);
    T = { port: srv.port };
  });
  after(async () => { await srv?.stop(); });

  it("a missing, wrong, shorter or longer token gets 401 (counted as token)", async () => {
    for (const a of [undefined, "Bearer nope", "Bearer s3cret-toke", "Bearer s3cret-token2", "Basic s3cret-token"]) {
      const r = await req(T, "GET", "/api/stats", { headers: a ? { authorization: a } : {} });
      assertRefused(r, 401, "UNAUTHORIZED", /token/);
    }
    const m = await req(T, "GET", "/metrics", { headers: { authorization: "Bearer s3cret-token" } });
    assert.match(m.text, /^sluice_api_refused_total\{reason="token"\} 5$/m);
  });

  it("the right token is enough (a proxy in front is fine then)", async () => {
    const r = await req(T, "POST", "/api/publish", {
      headers: { authorization: "Bearer s3cret-token", "x-forwarded-for": "203.0.113.7", ...JSON_CT }, body: PUBLISH,
    });
    assert.equal(r.status, 200, r.text);
  });

  it("server exits cleanly", async () => { assertCleanExit(await srv.stop()); });
});

describe("the API on a listener of its own (api = { host, port, hosts })", () => {
  let srv, C, A;
  before(async () => {
    srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0,
      api = { host = "127.0.0.1", port = 0, hosts = { "sluice.internal" } }, ${NS} } } }`);
    await srv.waitLog(/status page on http/);
    C = { port: srv.port };
    A = { port: apiPort(srv) };
    assert.notEqual(A.port, C.port);
  });
  after(async () => { await srv?.stop(); });

  it("the client port answers 404 for /api/*, /metrics and /, and serves /healthz, /readyz, /socket.io/", async () => {
    for (const [m, p] of [["POST", "/api/publish"], ["POST", "/api/reload"], ["GET", "/api/stats"], ["GET", "/metrics"], ["GET", "/"]]) {
      const r = await req(C, m, p, { headers: JSON_CT, body: m === "POST" ? PUBLISH : undefined });
      assert.equal(r.status, 404, `${m} ${p} on the client port: ${r.text}`);
      assert.equal(r.body?.error?.code, "NOT_FOUND");
    }
    assert.equal((await req(C, "GET", "/healthz")).status, 200);
    assert.equal((await req(C, "GET", "/readyz")).status, 200);
    const s = await connected(client(`http://127.0.0.1:${C.port}/feed`, MODES.websocket));
    closeAll(s);
  });

  it("a TCP forwarder in front of the client port reaches no API", async () => {
    const fwd = await forwarder(C.port);
    try {
      const r = await req({ port: fwd.port }, "POST", "/api/reload", { headers: JSON_CT });
      assert.equal(r.status, 404, r.text);
    } finally { await fwd.close(); }
  });

  it("the API port answers /api/publish, /api/stats, /metrics, the status page and the probes", async () => {
    assert.equal((await req(A, "POST", "/api/publish", { headers: JSON_CT, body: PUBLISH })).status, 200);
    assert.equal((await req(A, "GET", "/api/stats")).status, 200);
    assert.match((await req(A, "GET", "/metrics")).text, /streamfence_messages_published_total/);
    assert.match((await req(A, "GET", "/")).text, /<title>Sluice<\/title>/);
    assert.equal((await req(A, "GET", "/healthz")).status, 200);
    assert.equal((await req(A, "GET", "/socket.io/?EIO=4&transport=polling")).status, 404);
  });

  it("the rules cover every path of the API listener, the probes included", async () => {
    for (const p of ["/metrics", "/", "/healthz", "/nope"]) {
      assertRefused(await req(A, "GET", p, { headers: { host: "evil" } }), 403, "HOST_REFUSED", /Host/);
      assertRefused(await req(A, "GET", p, { headers: { origin: "https://evil.example" } }), 403, "ORIGIN_REFUSED", /Origin/);
      assertRefused(await req(A, "GET", p, { headers: { "x-real-ip": "1.2.3.4" } }), 403, "PROXIED", /X-Real-IP/);
    }
  });

  it("a name listed in api.hosts is accepted, with or without a port", async () => {
    for (const host of ["sluice.internal", "SLUICE.internal:9090"]) {
      assert.equal((await req(A, "GET", "/api/stats", { headers: { host } })).status, 200, host);
    }
    assertRefused(await req(A, "GET", "/api/stats", { headers: { host: "x.sluice.internal" } }), 403, "HOST_REFUSED", /api\.hosts/);
  });

  it("server exits cleanly", async () => { assertCleanExit(await srv.stop()); });
});

describe("the API on a Unix socket (api = { path })", () => {
  let srv, sock;
  before(async () => {
    sock = path.join(tmpDir(), "sluice.sock");
    srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0, api = { path = "${sock}" }, ${NS} } } }`);
    await srv.waitLog(/status page on unix:/);
  });
  after(async () => { await srv?.stop(); });

  it("answers there (mode 0660) and not on the client port", async () => {
    assert.equal(statSync(sock).mode & 0o777, 0o660);
    const U = { socketPath: sock };
    assert.equal((await req(U, "GET", "/api/stats", { headers: { host: "localhost" } })).status, 200);
    assert.equal((await req(U, "POST", "/api/publish", { headers: { host: "localhost", ...JSON_CT }, body: PUBLISH })).status, 200);
    assertRefused(await req(U, "POST", "/api/publish", { headers: { host: "localhost" }, body: PUBLISH }), 415, "UNSUPPORTED_MEDIA_TYPE", /Content-Type/);
    assert.equal((await req({ port: srv.port }, "GET", "/metrics")).status, 404);
  });

  it("server exits cleanly and removes the socket file", async () => {
    assertCleanExit(await srv.stop());
    assert.equal(existsSync(sock), false);
  });
});

// ---------------------------------------------------------------- CORS and origins

const polling = (port, headers = {}) => req({ port }, "GET", "/socket.io/?EIO=4&transport=polling", { headers });

describe("CORS without the cors key", () => {
  let srv;
  before(async () => { srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0, ${NS} } } }`); });
  after(async () => { await srv?.stop(); });

  it("no CORS header at all, whatever the Origin (socket.io 3+)", async () => {
    const r = await polling(srv.port, { origin: "https://evil.example" });
    assert.equal(r.status, 200, r.text);
    for (const h of Object.keys(r.headers)) assert.ok(!h.startsWith("access-control-"), `unexpected ${h}`);
    const pre = await req({ port: srv.port }, "OPTIONS", "/socket.io/?EIO=4&transport=polling", {
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    assert.notEqual(pre.status, 204);
    for (const h of Object.keys(pre.headers)) assert.ok(!h.startsWith("access-control-"), `unexpected ${h}`);
  });

  it("server exits cleanly", async () => { assertCleanExit(await srv.stop()); });
});

describe("CORS with cors = { origins = { exact, pattern }, credentials = true }", () => {
  let srv, P;
  before(async () => {
    srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0,
      cors = { origins = { "https://app.example.com", "https://*.example.org" }, credentials = true,
               methods = { "GET", "POST" } },
      ${NS} } } }`);
    P = srv.port;
  });
  after(async () => { await srv?.stop(); });

  it("an exact origin is allowed: Allow-Origin is that origin, with credentials and Vary", async () => {
    const r = await polling(P, { origin: "https://app.example.com" });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers["access-control-allow-origin"], "https://app.example.com");
    assert.equal(r.headers["access-control-allow-credentials"], "true");
    assert.match(r.headers.vary || "", /Origin/);
  });

  it("a pattern matches subdomains only, of the same scheme", async () => {
    for (const o of ["https://a.example.org", "https://a.b.example.org"]) {
      const r = await polling(P, { origin: o });
      assert.equal(r.status, 200, `${o}: ${r.text}`);
      assert.equal(r.headers["access-control-allow-origin"], o);
    }
    for (const o of ["https://example.org", "http://a.example.org", "https://a.example.org.evil.com", "https://evilexample.org"]) {
      const r = await polling(P, { origin: o });
      assert.equal(r.status, 403, `${o}: ${r.text}`);
    }
  });

  it("Origin: https://evil.example gets 403 with the Engine.IO error naming cors.origins", async () => {
    const r = await polling(P, { origin: "https://evil.example" });
    assert.equal(r.status, 403);
    assert.equal(r.body?.code, 4, r.text);
    assert.match(r.body.message, /cors\.origins/);
    assert.equal(r.headers["access-control-allow-origin"], undefined);
    const m = await req({ port: P }, "GET", "/metrics");
    assert.match(m.text, /^sluice_eio_refused_total\{reason="origin"\} [1-9]\d*$/m);
  });

  it("no Origin header (Node, mobile): served, without CORS headers", async () => {
    const r = await polling(P);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers["access-control-allow-origin"], undefined);
  });

  it("a preflight is answered 204 with the methods and the requested headers", async () => {
    const r = await req({ port: P }, "OPTIONS", "/socket.io/?EIO=4&transport=polling", {
      headers: { origin: "https://app.example.com", "access-control-request-method": "POST", "access-control-request-headers": "content-type, x-token" },
    });
    assert.equal(r.status, 204);
    assert.equal(r.headers["access-control-allow-origin"], "https://app.example.com");
    assert.equal(r.headers["access-control-allow-methods"], "GET,POST");
    assert.equal(r.headers["access-control-allow-headers"], "content-type, x-token");
    assert.equal(r.headers["access-control-allow-credentials"], "true");
    const bad = await req({ port: P }, "OPTIONS", "/socket.io/?EIO=4&transport=polling", {
      headers: { origin: "https://evil.example", "access-control-request-method": "POST" },
    });
    assert.equal(bad.headers["access-control-allow-origin"], undefined);
  });

  it("polling requests of a session are checked too", async () => {
    const open = await polling(P, { origin: "https://app.example.com" });
    const sid = JSON.parse(open.text.slice(1)).sid;
    const r = await req({ port: P }, "POST", `/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
      headers: { origin: "https://evil.example", "content-type": "text/plain" }, body: "40/feed,",
    });
    assert.equal(r.status, 403, r.text);
  });

  it("WebSocket upgrade: a bad Origin gets 403, no Origin or an allowed one is accepted", async () => {
    const url = `ws://127.0.0.1:${P}/socket.io/?EIO=4&transport=websocket`;
    const status = await new Promise((resolve) => {
      const ws = new WebSocket(url, { origin: "https://evil.example" });
      ws.on("unexpected-response", (_rq, res) => { resolve(res.statusCode); ws.terminate(); });
      ws.on("open", () => { resolve("open"); ws.close(); });
      ws.on("error", () => {});
    });
    assert.equal(status, 403);
    for (const origin of [undefined, "https://app.example.com"]) {
      const opened = await new Promise((resolve) => {
        const ws = new WebSocket(url, origin ? { origin } : {});
        ws.on("open", () => { resolve(true); ws.close(); });
        ws.on("unexpected-response", (_rq, res) => resolve(res.statusCode));
        ws.on("error", () => {});
      });
      assert.equal(opened, true, `origin ${origin}`);
    }
    // the real client over websocket sends no Origin; with a bad one it cannot connect
    const s = await connected(client(`http://127.0.0.1:${P}/feed`, MODES.websocket));
    closeAll(s);
    const bad = client(`http://127.0.0.1:${P}/feed`, { ...MODES["polling-only"], extraHeaders: { origin: "https://evil.example" } });
    await connectError(bad);
    closeAll(bad);
  });

  it("server exits cleanly", async () => { assertCleanExit(await srv.stop()); });
});

describe("CORS: origins \"*\" and credentials unset", () => {
  let srv;
  before(async () => {
    srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0, cors = { origins = "*" }, ${NS} } } }`);
  });
  after(async () => { await srv?.stop(); });

  it("Allow-Origin: * and no Allow-Credentials", async () => {
    const r = await polling(srv.port, { origin: "https://anything.example" });
    assert.equal(r.status, 200);
    assert.equal(r.headers["access-control-allow-origin"], "*");
    assert.equal(r.headers["access-control-allow-credentials"], undefined);
  });

  it("server exits cleanly", async () => { assertCleanExit(await srv.stop()); });
});

// ---------------------------------------------------------------- config validation

describe("api and cors config: unknown keys are errors", () => {
  const bad = [
    [`api = { prot = 9090 }`, /config\.lua: server "main": api: unknown api key "prot" \(did you mean "port"\?\)/],
    [`api = { host = "127.0.0.1" }`, /api: port is required with host/],
    [`api = { path = "/tmp/x.sock", port = 1 }`, /api: path \(a Unix socket\) and host\/port exclude each other/],
    [`api = { port = 0, hosts = { "a b" } }`, /api: hosts\[1\]/],
    [`api = 9090`, /server "main": api must be a table/],
    [`cors = { origin = { "https://a.example" } }`, /server "main": cors: unknown cors key "origin" \(did you mean "origins"\?\)/],
    [`cors = { origins = { "https://a.example/" } }`, /cors: origins\[1\] "https:\/\/a\.example\/" is not an origin/],
    [`cors = { credentials = true }`, /cors: origins is required/],
    [`cors = { origins = "*", credentials = "yes" }`, /cors: credentials must be a boolean/],
  ];
  for (const [frag, re] of bad) {
    it(`sluice check refuses ${frag}`, async () => {
      const file = writeConfig(`return { servers = { main = { host = "127.0.0.1", port = 0, ${frag}, ${NS} } } }`);
      const r = await runSluice(["check", file]);
      assert.notEqual(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout + r.stderr, re);
    });
  }

  it("JSON configs take the same keys, and the same errors", async () => {
    const ok = writeConfig(JSON.stringify({ servers: { main: { port: 0, api: { path: "/tmp/sluice-x.sock" },
      cors: { origins: ["https://a.example"], credentials: true, methods: "GET,POST" },
      namespaces: [{ path: "/feed", topics: ["prices"] }] } } }), "config.json");
    const r = await runSluice(["check", ok]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /API on unix:\/tmp\/sluice-x\.sock/);
    const bad = writeConfig(JSON.stringify({ servers: { main: { port: 0, api: { port: 9090, host: "127.0.0.1", hosst: ["x"] },
      namespaces: [{ path: "/feed", topics: ["prices"] }] } } }), "config.json");
    const b = await runSluice(["check", bad]);
    assert.notEqual(b.code, 0);
    assert.match(b.stdout + b.stderr, /config\.json(:\d+)?: server "main": api: unknown api key "hosst" \(did you mean "host"\?\)/);
  });

  it("sluice check accepts and summarises api and cors", async () => {
    const file = writeConfig(`return { servers = { main = { host = "127.0.0.1", port = 0,
      api = { port = 9090, hosts = { "sluice.internal" } }, cors = { origins = { "https://a.example", "https://*.b.example" } }, ${NS} } } }`);
    const r = await runSluice(["check", file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /API on 127\.0\.0\.1:9090/);
    assert.match(r.stdout + r.stderr, /CORS: 2 origins/);
  });
});

// ---------------------------------------------------------------- allowRequest

describe("allowRequest(req): accept or refuse any Engine.IO handshake", () => {
  let srv, P;
  before(async () => {
    srv = await startServer(`return { servers = { main = { host = "127.0.0.1", port = 0,
      engineIo = { path = "/raw/", onMessage = function(conn, data) conn:send(data) end },
      allowRequest = function(req)
        if req.query.boom then error("boom") end
        if req.headers["x-deny"] then return false, "denied by allowRequest: " .. req.headers["x-deny"], 401 end
        if req.query.token == "bad" then return false, "bad token" end
        if req.method ~= "GET" or req.remoteAddress ~= "127.0.0.1" or req.query.EIO ~= "4" then
          return false, "unexpected request " .. req.method .. " " .. req.path
        end
        if req.query.nothing then return end
        return req.path == "/socket.io/" or req.path == "/raw/"
      end,
      ${NS} } } }`);
    P = srv.port;
  });
  after(async () => { await srv?.stop(); });

  it("accepts: the handshake gets its open packet", async () => {
    const r = await polling(P);
    assert.equal(r.status, 200, r.text);
    assert.match(r.text, /^0\{"sid"/);
    assert.equal((await req({ port: P }, "GET", "/raw/?EIO=4&transport=polling")).status, 200);
  });

  it("refuses with the hook's status and message (headers and query seen)", async () => {
    const r = await polling(P, { "x-deny": "nope" });
    assert.equal(r.status, 401, r.text);
    assert.deepEqual(r.body, { code: 4, message: "denied by allowRequest: nope" });
    const q = await req({ port: P }, "GET", "/socket.io/?EIO=4&transport=polling&token=bad");
    assert.equal(q.status, 403, q.text);
    assert.deepEqual(q.body, { code: 4, message: "bad token" });
  });

  it("fails closed: returning nothing or raising refuses (403 Forbidden), the error is logged", async () => {
    for (const extra of ["&nothing=1", "&boom=1"]) {
      const r = await req({ port: P }, "GET", `/socket.io/?EIO=4&transport=polling${extra}`);
      assert.equal(r.status, 403, `${extra}: ${r.text}`);
      assert.deepEqual(r.body, { code: 4, message: "Forbidden" });
    }
    await srv.waitLog(/allowRequest.*boom|boom.*allowRequest/);
    const m = await req({ port: P }, "GET", "/metrics");
    assert.match(m.text, /^sluice_eio_refused_total\{reason="allow_request"\} [1-9]\d*$/m);
  });

  it("WebSocket handshakes are judged too; a session's later requests are not", async () => {
    const url = `ws://127.0.0.1:${P}/socket.io/?EIO=4&transport=websocket`;
    const status = await new Promise((resolve) => {
      const ws = new WebSocket(url, { headers: { "x-deny": "ws" } });
      ws.on("unexpected-response", (_rq, res) => { resolve(res.statusCode); ws.terminate(); });
      ws.on("open", () => { resolve("open"); ws.close(); });
      ws.on("error", () => {});
    });
    assert.equal(status, 401);
    const open = await polling(P);
    const sid = JSON.parse(open.text.slice(1)).sid;
    const r = await req({ port: P }, "POST", `/socket.io/?EIO=4&transport=polling&sid=${sid}`, {
      headers: { "x-deny": "later", "content-type": "text/plain" }, body: "40/feed,",
    });
    assert.equal(r.status, 200, r.text);
  });

  it("the real client: refused with extraHeaders, connects without", async () => {
    const bad = client(`http://127.0.0.1:${P}/feed`, { ...MODES["polling-only"], extraHeaders: { "x-deny": "client" } });
    const e = await connectError(bad);
    assert.ok(e);
    closeAll(bad);
    for (const mode of [MODES.websocket, MODES["polling+upgrade"]]) {
      const s = await connected(client(`http://127.0.0.1:${P}/feed`, mode));
      closeAll(s);
    }
  });

  it("server exits cleanly", async () => { assertCleanExit(await srv.stop()); });
});
