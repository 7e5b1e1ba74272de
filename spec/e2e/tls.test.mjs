// tls.test.mjs - transport WSS: TLS on the server's port (issue 12), against a CA and server
// certificates made in the test with the `openssl` command (helpers.mjs makePki).
//
//   - `sluice check` and start: the StreamFenceJs messages, unknown keys, missing, unreadable,
//     garbage, expired, mismatched and encrypted key files, each named with its key and path;
//     a TLS config that cannot be served refuses to start (never plaintext);
//   - the real socket.io-client over wss:// (websocket only) and https:// (polling, then the
//     upgrade), trusting the test CA; a bulk transfer (partial TLS writes, backpressure);
//   - plain HTTP to the TLS port gets no plaintext answer, and is counted;
//   - the protocol minimum (TLSv1.3 by default, TLSv1.2 when configured);
//   - rotation: the files are replaced (a new serial), a new connection sees the new
//     certificate while an open socket.io connection keeps receiving; a bad new certificate
//     (file change or POST /api/reload) keeps the old one, is logged and counted;
//   - headless Chromium over wss:// (certificate errors ignored).
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { writeFileSync, renameSync, copyFileSync, mkdirSync, chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import {
  makePki, startServer, runSluice, writeConfig, assertCleanExit, client, connected, Inbox,
  closeAll, withTimeout, sleep, tmpDir,
} from "./helpers.mjs";
import { serveStatic } from "./browser/serve.mjs";

const pki = makePki();
const good = pki.issue({ name: "good", serial: "1001" });
const expired = pki.issue({ name: "expired", serial: "0E01", start: "20200101000000Z", end: "20200201000000Z" });
const other = pki.issue({ name: "other", serial: "0F01" });
const enc = pki.issue({ name: "enc", serial: "0F02", password: "s3cret" });

function luaConfig(tlsBlock, { transport = "WSS", extra = "" } = {}) {
  return `
local n = 0
return { servers = { main = {
  host = "127.0.0.1", port = 0, transport = ${JSON.stringify(transport)},
  ${tlsBlock ? `tls = ${tlsBlock},` : ""}
  ${extra}
  namespaces = {
    { path = "/feed", topics = { "prices", "bulk", "ticks" }, overflowAction = "DROP_OLDEST",
      maxQueuedMessagesPerClient = 4096, maxQueuedBytesPerClient = 64000000 },
    { path = "/slow", topics = { "t" }, overflowAction = "DROP_OLDEST", maxQueuedMessagesPerClient = 16 },
  },
} } }`;
}
const tlsBlock = (cert, key, more = "") =>
  `{ certChainPemPath = ${JSON.stringify(cert)}, privateKeyPemPath = ${JSON.stringify(key)}${more} }`;

// httpsReq: a request to the TLS port trusting the test CA; resolves {status, text}.
function httpsReq(port, pathName, { method = "GET", body, headers = {} } = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = https.request({
      host: "127.0.0.1", port, path: pathName, method, ca: pki.caPem,
      headers: body ? { "content-type": "application/json", ...headers } : headers,
    }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d) => { text += d; });
      res.on("end", () => resolve({ status: res.statusCode, text }));
    });
    req.on("error", reject);
    req.end(body);
  }), 8000, `https ${method} ${pathName}`);
}

const publishTls = async (port, msgs) => {
  const r = await httpsReq(port, "/api/publish", { method: "POST", body: JSON.stringify(msgs) });
  assert.equal(r.status, 200, r.text);
};

const metric = async (port, re) => {
  const t = (await httpsReq(port, "/metrics")).text;
  const m = re.exec(t);
  assert.ok(m, `metric ${re} in:\n${t.split("\n").filter((l) => l.includes("tls")).join("\n")}`);
  return Number(m[1]);
};

// peerSerial: the serial number of the certificate a new TLS connection is served.
function peerSerial(port, opts = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const s = tls.connect({ host: "127.0.0.1", port, ca: pki.caPem, servername: "localhost", ...opts }, () => {
      const serial = s.getPeerCertificate().serialNumber;
      s.end();
      resolve(serial);
    });
    s.on("error", reject);
  }), 5000, "a TLS handshake");
}

const subscribe = (sock, topic) => withTimeout(new Promise((resolve) => {
  sock.emit("subscribe", { topic }, resolve);
}), 5000, `subscribe ${topic}`);

describe("sluice check and start with a tls block", () => {
  const check = async (tlsText, opts) => runSluice(["check", writeConfig(luaConfig(tlsText, opts))]);

  test("a valid tls block passes and the summary names it", async () => {
    const r = await check(tlsBlock(good.cert, good.key));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /TLS \(WSS\/HTTPS\) TLSv1\.3\+, certificate .*good\.pem/);
  });

  test("a StreamFenceJs JSON file with transport WSS and a tls block", async () => {
    const json = {
      servers: { main: {
        host: "127.0.0.1", port: 0, transport: "WSS",
        tls: { certChainPemPath: good.cert, privateKeyPemPath: good.key, protocol: "TLSv1.2" },
        namespaces: [{ path: "/feed", topics: ["prices"] }],
      } },
    };
    let r = await runSluice(["check", writeConfig(JSON.stringify(json), "config.json")]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /TLS \(WSS\/HTTPS\) TLSv1\.2\+/);
    json.servers.main.tls.certChainPemPath = expired.cert;
    r = await runSluice(["check", writeConfig(JSON.stringify(json), "config.json")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /certificate expired/);
  });

  test("StreamFenceJs's messages: certChainPemPath / privateKeyPemPath are required", async () => {
    let r = await check(`{ privateKeyPemPath = ${JSON.stringify(good.key)} }`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /certChainPemPath is required/);
    r = await check(`{ certChainPemPath = ${JSON.stringify(good.cert)} }`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /privateKeyPemPath is required/);
  });

  test("transport WSS without a tls block is an error, and so is a tls block with WS", async () => {
    let r = await check(null);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /transport WSS needs a tls block/);
    r = await check(tlsBlock(good.cert, good.key), { transport: "WS" });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /a tls block needs transport WSS/);
  });

  test("an unknown key inside tls is an error (with a suggestion), not a warning", async () => {
    const r = await check(tlsBlock(good.cert, good.key, `, privateKeyPasword = "x"`));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown tls key "privateKeyPasword" \(did you mean "privateKeyPassword"\?\)/);
  });

  test("protocol: TLSv1.2 and TLSv1.3 only", async () => {
    let r = await check(tlsBlock(good.cert, good.key, `, protocol = "TLSv1.2"`));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /TLSv1\.2\+/);
    r = await check(tlsBlock(good.cert, good.key, `, protocol = "TLSv1.1"`));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Invalid tls protocol "TLSv1\.1" \(expected: TLSv1\.3, TLSv1\.2\)/);
  });

  test("a missing file: the key, the path and the reason", async () => {
    const r = await check(tlsBlock("/nonexistent/cert.pem", good.key));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls certChainPemPath "\/nonexistent\/cert\.pem": No such file or directory/);
  });

  test("an unreadable file: the key, the path and the reason", async () => {
    const dir = tmpDir();
    // a directory is unreadable as a file even for root
    let r = await check(tlsBlock(good.cert, dir));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls privateKeyPemPath ".*": Is a directory/);
    if (process.getuid && process.getuid() !== 0) {
      const f = path.join(dir, "secret.key");
      copyFileSync(good.key, f);
      chmodSync(f, 0o000);
      r = await check(tlsBlock(good.cert, f));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /tls privateKeyPemPath ".*secret\.key": Permission denied/);
    }
  });

  test("a file that is not PEM", async () => {
    const f = path.join(tmpDir(), "garbage.pem");
    writeFileSync(f, "this is not a certificate\n");
    let r = await check(tlsBlock(f, good.key));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls certChainPemPath ".*garbage\.pem": not a PEM certificate chain/);
    r = await check(tlsBlock(good.cert, f));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls privateKeyPemPath ".*garbage\.pem": not a PEM private key/);
  });

  test("an expired certificate", async () => {
    const r = await check(tlsBlock(expired.cert, expired.key));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls certChainPemPath ".*expired\.pem": the certificate expired on 2020-02-01T00:00:00Z/);
  });

  test("a key that does not match the certificate", async () => {
    const r = await check(tlsBlock(good.cert, other.key));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls privateKeyPemPath ".*other\.key" does not match the certificate in certChainPemPath ".*good\.pem"/);
  });

  test("an encrypted key needs privateKeyPassword (never a prompt)", async () => {
    let r = await check(tlsBlock(enc.cert, enc.key));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /tls privateKeyPemPath ".*enc\.key": not a PEM private key \(an encrypted key needs privateKeyPassword\)/);
    r = await check(tlsBlock(enc.cert, enc.key, `, privateKeyPassword = "wrong"`));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /or a wrong privateKeyPassword/);
    r = await check(tlsBlock(enc.cert, enc.key, `, privateKeyPassword = "s3cret"`));
    assert.equal(r.code, 0, r.stderr);
  });

  test("a TLS config that cannot be served refuses to start: never plaintext", async () => {
    const r = await runSluice([writeConfig(luaConfig(tlsBlock(expired.cert, expired.key)))]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /server "main": tls certChainPemPath .* expired .*not starting/);
    assert.doesNotMatch(r.stderr, /listening/);
  });
});

describe("socket.io over TLS", () => {
  let srv;
  before(async () => {
    srv = await startServer(luaConfig(tlsBlock(good.cert, good.key)));
  });
  after(async () => { if (srv) assertCleanExit(await srv.stop()); });

  test("the server logs https and serves the configured certificate", async () => {
    assert.match(srv.url, /^https:/);
    assert.match(srv.stderr(), /TLS certificate loaded \(serial 1001/);
    assert.equal(await peerSerial(srv.port), "1001");
  });

  test("wss:// websocket only: connect, subscribe, receive", async () => {
    const s = client(`wss://127.0.0.1:${srv.port}/feed`, { transports: ["websocket"], ca: pki.caPem });
    try {
      await connected(s);
      const inbox = new Inbox(s, "prices");
      assert.deepEqual(await subscribe(s, "prices"), { ok: true });
      await publishTls(srv.port, { namespace: "/feed", topic: "prices", payload: { px: 1 } });
      const [p] = await inbox.next();
      assert.equal(p.px, 1);
      assert.equal(s.io.engine.transport.name, "websocket");
    } finally { closeAll(s); }
  });

  test("https:// polling first, then the upgrade to websocket", async () => {
    const s = client(`https://127.0.0.1:${srv.port}/feed`, { ca: pki.caPem });
    let first = null;
    s.io.once("open", () => { first = s.io.engine.transport.name; });
    try {
      await connected(s);
      assert.equal(first, "polling");
      const inbox = new Inbox(s, "prices");
      await subscribe(s, "prices");
      await publishTls(srv.port, { namespace: "/feed", topic: "prices", payload: { px: 2 } });
      assert.equal((await inbox.next())[0].px, 2);
      await withTimeout(new Promise((r) => (s.io.engine.transport.name === "websocket" ? r() : s.io.engine.once("upgrade", r))),
        5000, "the upgrade");
      await publishTls(srv.port, { namespace: "/feed", topic: "prices", payload: { px: 3 } });
      assert.equal((await inbox.next())[0].px, 3);
    } finally { closeAll(s); }
  });

  test("a bulk transfer over wss: 300 deliveries of 32 KiB arrive whole and in order", async () => {
    const s = client(`wss://127.0.0.1:${srv.port}/feed`, { transports: ["websocket"], ca: pki.caPem });
    try {
      await connected(s);
      const inbox = new Inbox(s, "bulk");
      await subscribe(s, "bulk");
      const pad = "x".repeat(32 * 1024);
      for (let i = 0; i < 300; i += 20) {
        const batch = [];
        for (let k = i; k < i + 20; k++) batch.push({ namespace: "/feed", topic: "bulk", payload: { k, pad } });
        await publishTls(srv.port, batch);
      }
      const items = await inbox.count(300, 20000);
      items.forEach(([p], k) => {
        assert.equal(p.k, k);
        assert.equal(p.pad.length, pad.length);
      });
    } finally { closeAll(s); }
  });

  test("backpressure over TLS: a client that stops reading holds the server's queue, not its memory", async () => {
    const s = client(`wss://127.0.0.1:${srv.port}/slow`, { transports: ["websocket"], ca: pki.caPem });
    try {
      await connected(s);
      const inbox = new Inbox(s, "t");
      await subscribe(s, "t");
      const tcp = s.io.engine.transport.ws._socket; // the TLSSocket under ws
      tcp.pause();
      const pad = "y".repeat(10 * 1024);
      for (let i = 0; i < 1000; i += 50) {
        const batch = [];
        for (let k = i; k < i + 50; k++) batch.push({ namespace: "/slow", topic: "t", payload: { k, pad } });
        await publishTls(srv.port, batch);
      }
      // 10 MB offered: the kernel buffers and the high-water mark hold a few hundred KB, the
      // lane 16 messages; the rest is dropped (DROP_OLDEST) instead of piling up in the server
      const dropped = await metric(srv.port, /streamfence_messages_dropped_total\{namespace="\/slow",topic="t"\} (\d+)/);
      assert.ok(dropped > 500, `dropped ${dropped}`);
      tcp.resume();
      const [last] = await inbox.until(([p]) => p.k === 999, 15000);
      assert.equal(last.pad.length, pad.length);
    } finally { closeAll(s); }
  });

  test("plain HTTP to the TLS port is never answered in plaintext, and is counted", async () => {
    const before0 = await metric(srv.port, /sluice_tls_handshake_errors_total\{server="main"\} (\d+)/);
    const got = await withTimeout(new Promise((resolve) => {
      let data = "";
      const c = net.connect(srv.port, "127.0.0.1", () => c.write("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
      c.on("data", (d) => { data += d.toString("latin1"); });
      c.on("close", () => resolve(data));
      c.on("error", () => resolve(data));
    }), 5000, "the server to close a plaintext connection");
    assert.doesNotMatch(got, /HTTP\/1\.|streamfence|sluice_/);
    const after0 = await metric(srv.port, /sluice_tls_handshake_errors_total\{server="main"\} (\d+)/);
    assert.equal(after0, before0 + 1);
  });

  test("protocol minimum TLSv1.3 by default: a TLSv1.2-only client is refused", async () => {
    await assert.rejects(peerSerial(srv.port, { maxVersion: "TLSv1.2" }));
  });

  test("AES-128-GCM preferred over the client's AES-256 first; no TLS 1.3 tickets; records run by Sluice", async () => {
    // Node's client offers TLS_AES_256_GCM_SHA384 first: the server's order decides. With
    // the record-layer handoff (core/tls.h) OpenSSL sends no TLS 1.3 session ticket: a
    // request answered on the connection proves none came before the answer.
    const before = await metric(srv.port, /sluice_tls_connections_total\{server="main",record_layer="sluice"\} (\d+)/);
    const r = await withTimeout(new Promise((resolve, reject) => {
      const s = tls.connect({ host: "127.0.0.1", port: srv.port, ca: pki.caPem, servername: "localhost" });
      let ticket = null, answer = "", cipher = null, version = null;
      s.on("session", (t) => { ticket = t; });
      s.on("secureConnect", () => {
        cipher = s.getCipher().name;
        version = s.getProtocol();
        s.write("GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
      });
      s.on("data", (d) => { answer += d; });
      s.on("close", () => resolve({ cipher, version, ticket, answer }));
      s.on("error", reject);
    }), 5000, "a TLS request");
    assert.equal(r.version, "TLSv1.3");
    assert.equal(r.cipher, "TLS_AES_128_GCM_SHA256");
    assert.match(r.answer, /^HTTP\/1\.1 200/);
    assert.equal(r.ticket, null);
    const after = await metric(srv.port, /sluice_tls_connections_total\{server="main",record_layer="sluice"\} (\d+)/);
    assert.ok(after >= before + 1, `offloaded connections ${before} -> ${after}`);
  });

  test("metrics: the certificate's expiry and the reload counters", async () => {
    const exp = await metric(srv.port, /sluice_tls_cert_expiry_timestamp_seconds\{server="main"\} (\d+)/);
    const s = tls.connect({ host: "127.0.0.1", port: srv.port, ca: pki.caPem, servername: "localhost" });
    const validTo = await withTimeout(new Promise((r, j) => {
      s.on("secureConnect", () => { r(s.getPeerCertificate().valid_to); s.end(); });
      s.on("error", j);
    }), 5000, "handshake");
    assert.equal(exp, Date.parse(validTo) / 1000);
    assert.equal(await metric(srv.port, /sluice_tls_reloads_total\{server="main",result="ok"\} (\d+)/), 0);
    assert.equal(await metric(srv.port, /sluice_tls_reloads_total\{server="main",result="error"\} (\d+)/), 0);
  });
});

describe("TLS with the API on its own listener", () => {
  test("the client port speaks TLS, the API listener (loopback) stays plain HTTP", async () => {
    const srv = await startServer(luaConfig(tlsBlock(good.cert, good.key), { extra: `api = { port = 0 },` }));
    try {
      const log = await srv.waitLog(/API, \/metrics and status page on http:\/\/[^:]+:(\d+)/);
      const apiPort = Number(/API, \/metrics and status page on http:\/\/[^:]+:(\d+)/.exec(log)[1]);
      const res = await fetch(`http://127.0.0.1:${apiPort}/metrics`, { signal: AbortSignal.timeout(5000) });
      assert.equal(res.status, 200);
      assert.match(await res.text(), /sluice_tls_cert_expiry_timestamp_seconds\{server="main"\} \d+/);
      assert.equal(await peerSerial(srv.port), "1001");
      const s = client(`wss://127.0.0.1:${srv.port}/feed`, { transports: ["websocket"], ca: pki.caPem });
      try { await connected(s); } finally { closeAll(s); }
    } finally { assertCleanExit(await srv.stop()); }
  });
});

describe("protocol TLSv1.2", () => {
  test("a TLSv1.2 client is served when protocol is TLSv1.2", async () => {
    const srv = await startServer(luaConfig(tlsBlock(good.cert, good.key, `, protocol = "TLSv1.2"`)));
    try {
      assert.equal(await peerSerial(srv.port, { maxVersion: "TLSv1.2" }), "1001");
      // socket.io over TLS 1.2 runs on OpenSSL's record layer (the handoff is TLS 1.3 only)
      // (engine.io-client passes no maxVersion through: an agent carries it)
      const agent = new https.Agent({ maxVersion: "TLSv1.2", ca: pki.caPem });
      const sock = client(`wss://127.0.0.1:${srv.port}/feed`, { transports: ["websocket"], ca: pki.caPem, agent });
      try {
        await connected(sock);
        const inbox = new Inbox(sock, "ticks");
        await subscribe(sock, "ticks");
        await publishTls(srv.port, { namespace: "/feed", topic: "ticks", payload: { n: 12 } });
        assert.equal((await inbox.until(([p]) => p.n === 12))[0].n, 12);
      } finally { closeAll(sock); }
      assert.ok(await metric(srv.port, /sluice_tls_connections_total\{server="main",record_layer="openssl"\} (\d+)/) >= 2);
    } finally { assertCleanExit(await srv.stop()); }
  });
});

describe("certificate rotation", () => {
  const live = { cert: path.join(pki.dir, "live", "cert.pem"), key: path.join(pki.dir, "live", "key.pem") };
  // install: put a certificate and key in place the way a rotation does (write aside, rename).
  const install = (c) => {
    copyFileSync(c.key, `${live.key}.new`);
    copyFileSync(c.cert, `${live.cert}.new`);
    renameSync(`${live.key}.new`, live.key);
    renameSync(`${live.cert}.new`, live.cert);
  };
  let srv, sock, inbox;
  before(async () => {
    mkdirSync(path.dirname(live.cert), { recursive: true });
    install(good);
    srv = await startServer(luaConfig(tlsBlock(live.cert, live.key)));
    sock = client(`wss://127.0.0.1:${srv.port}/feed`, { transports: ["websocket"], ca: pki.caPem });
    await connected(sock);
    inbox = new Inbox(sock, "ticks");
    await subscribe(sock, "ticks");
  });
  after(async () => {
    closeAll(sock);
    if (srv) assertCleanExit(await srv.stop());
  });

  const tick = async (n) => {
    await publishTls(srv.port, { namespace: "/feed", topic: "ticks", payload: { n } });
    return (await inbox.until(([p]) => p.n === n))[0];
  };

  test("replacing the files: new connections get the new certificate, the open one keeps receiving", async () => {
    assert.equal(await peerSerial(srv.port), "1001");
    assert.equal((await tick(1)).n, 1);
    const next = pki.issue({ name: "next", serial: "2002" });
    install(next);
    await srv.waitLog(/TLS certificate reloaded \(serial 2002/);
    assert.equal(await peerSerial(srv.port), "2002");
    assert.equal((await tick(2)).n, 2, "the connection made with the old certificate still receives");
    assert.ok(await metric(srv.port, /sluice_tls_reloads_total\{server="main",result="ok"\} (\d+)/) >= 1);
  });

  test("a bad new certificate (expired) keeps the current one: logged and counted", async () => {
    const errors0 = await metric(srv.port, /sluice_tls_reloads_total\{server="main",result="error"\} (\d+)/);
    install(expired);
    await srv.waitLog(/TLS reload failed, the current certificate stays: .*expired/);
    assert.equal(await peerSerial(srv.port), "2002");
    assert.ok(await metric(srv.port, /sluice_tls_reloads_total\{server="main",result="error"\} (\d+)/) > errors0);
    assert.equal((await tick(3)).n, 3);
  });

  test("POST /api/reload with a mismatched key is refused with the reason; the certificate stays", async () => {
    copyFileSync(good.cert, `${live.cert}.new`);
    copyFileSync(other.key, `${live.key}.new`);
    renameSync(`${live.cert}.new`, live.cert);
    renameSync(`${live.key}.new`, live.key);
    const errors0 = await metric(srv.port, /sluice_tls_reloads_total\{server="main",result="error"\} (\d+)/);
    const r = await httpsReq(srv.port, "/api/reload", { method: "POST", body: "{}" });
    assert.equal(r.status, 400);
    assert.match(r.text, /does not match the certificate/);
    assert.match(r.text, /the current certificate stays/);
    assert.equal(await peerSerial(srv.port), "2002");
    assert.ok(await metric(srv.port, /sluice_tls_reloads_total\{server="main",result="error"\} (\d+)/) > errors0);
  });

  test("SIGHUP reloads the certificate through the configuration reload", async () => {
    const third = pki.issue({ name: "third", serial: "3003" });
    install(third);
    // the file watch may win the race; either way SIGHUP must leave serial 3003 in place
    srv.proc.kill("SIGHUP");
    await srv.waitLog(/SIGHUP: reloading/);
    await srv.waitLog(/configuration reloaded/);
    assert.equal(await peerSerial(srv.port), "3003");
    assert.equal((await tick(4)).n, 4);
  });
});

// ---- headless Chromium over wss:// ------------------------------------------------------------

function findChromium() {
  for (const name of [process.env.CHROMIUM_BIN, "chromium", "chromium-browser"].filter(Boolean)) {
    const r = spawnSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

function runChromium(bin, url, ms = 40000) {
  const profile = mkdtempSync(path.join(tmpdir(), "sluice-chromium-"));
  const args = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--ignore-certificate-errors", `--user-data-dir=${profile}`,
    "--virtual-time-budget=8000", "--dump-dom", url,
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

describe("chromium over wss://", () => {
  let srv, web;
  before(async () => {
    srv = await startServer(luaConfig(tlsBlock(good.cert, good.key), {
      extra: `onStart = function() sluice.every(50, function() n = n + 1; sluice.publish("/feed", "ticks", { n = n }) end) end,`,
    }));
    web = await serveStatic();
  });
  after(async () => {
    await web?.close();
    if (srv) assertCleanExit(await srv.stop());
  });

  test("the official browser bundle connects over wss:// and receives deliveries", async () => {
    const bin = findChromium();
    assert.ok(bin, "chromium is not installed: run `apt-get install -y chromium` (.ci/deps.sh installs it) " +
      "or set CHROMIUM_BIN; the browser check cannot run without it");
    const page = `${web.url}/?sluice=${encodeURIComponent(srv.url)}&ns=${encodeURIComponent("/feed")}` +
      "&topic=ticks&transports=websocket";
    const r = await runChromium(bin, page);
    const dom = r.stdout;
    const field = (id) => (new RegExp(`<span id="${id}">([^<]*)</span>`).exec(dom) || [])[1];
    const errors = [...dom.matchAll(/<ul id="errors">([\s\S]*?)<\/ul>/g)].map((m) => m[1]).join("");
    assert.equal(errors.replace(/\s/g, ""), "", `the page reported errors: ${errors}; notes ${field("notes")}`);
    const deliveries = [...dom.matchAll(/<li class="delivery" data-transport="(\w+)">/g)];
    assert.ok(deliveries.length >= 5, `>= 5 deliveries in the DOM, got ${deliveries.length} ` +
      `(status ${field("status")}, notes ${field("notes")}); chromium exit ${r.code}\n${r.stderr.slice(-1500)}`);
    assert.equal(field("transport"), "websocket");
    assert.equal(field("status"), "done");
    assert.match(srv.url, /^https:/);
  });
});
