// helpers.mjs - shared plumbing for Sluice's end-to-end tests.
//
// Every test file starts its own server (own config, own OS-assigned port) with startServer(),
// talks to it with the real socket.io-client, fetch, `ws` or raw `net` sockets, and finishes
// with a test that stops the server and checks it exited cleanly (assertCleanExit).
//
// Environment:
//   SLUICE_BIN   server binary (default build/sluice; `make asan` points it at build-asan/sluice)
//   SLUICE_ASAN  "1" under AddressSanitizer: memory bounds are relaxed for the shadow/quarantine
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, existsSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import net from "node:net";
import crypto from "node:crypto";
import { fileURLToPath } from "node:url";
import { io } from "socket.io-client";
import WebSocket from "ws";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const BIN = path.resolve(ROOT, process.env.SLUICE_BIN || "build/sluice");
export const ASAN = process.env.SLUICE_ASAN === "1";

const live = new Set();
process.on("exit", () => {
  for (const p of live) {
    try { p.kill("SIGKILL"); } catch { /* already gone */ }
  }
});

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// withTimeout: reject with a clear message if p does not settle within ms.
export function withTimeout(p, ms, what) {
  let t;
  const timer = new Promise((_, rej) => {
    t = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

// tmpDir: a fresh temporary directory (removed at process exit).
const tmpDirs = [];
process.on("exit", () => {
  for (const d of tmpDirs) {
    try { rmSync(d, { recursive: true, force: true }); } catch { /* */ }
  }
});
export function tmpDir(prefix = "sluice-e2e-") {
  const d = mkdtempSync(path.join(tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}

// writeConfig: write text to <tmp>/<name> and return the path.
export function writeConfig(text, name = "config.lua") {
  const file = path.join(tmpDir(), name);
  writeFileSync(file, text);
  return file;
}

// runSluice: run the binary to completion (for `sluice check ...` and bad configs).
// Resolves {code, signal, stdout, stderr, timedOut}.
export function runSluice(args, { env = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    if (!existsSync(BIN)) return reject(new Error(`server binary not found: ${BIN} (run make)`));
    const p = spawn(BIN, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    live.add(p);
    let stdout = "", stderr = "", timedOut = false;
    p.stdout.on("data", (d) => { stdout += d; });
    p.stderr.on("data", (d) => { stderr += d; });
    const t = setTimeout(() => { timedOut = true; p.kill("SIGKILL"); }, timeoutMs);
    p.on("error", reject);
    p.on("close", (code, signal) => {
      clearTimeout(t);
      live.delete(p);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

const CRASH_PATTERNS = [/ERROR: AddressSanitizer/, /ERROR: LeakSanitizer/, /runtime error:/];

// sanitizerErrors: lines of stderr that report a sanitizer finding.
export function sanitizerErrors(stderr) {
  return stderr.split("\n").filter((l) => CRASH_PATTERNS.some((re) => re.test(l)));
}

// startServer: write the config (Lua by default) to a temp dir and spawn `sluice <config>`.
// Waits (up to 10 s) until `servers` lines "listening on http(s)://127.0.0.1:<port>" appeared on
// stderr. Returns a handle {proc, port, ports, url, stderr(), pid, stop()}.
export async function startServer(configText, { ext = "lua", servers = 1, env = {}, args = [], file } = {}) {
  if (!existsSync(BIN)) throw new Error(`server binary not found: ${BIN} (run make)`);
  const cfg = file || writeConfig(configText, `config.${ext}`);
  const proc = spawn(BIN, [cfg, ...args], {
    cwd: path.dirname(cfg), // spill directories and the like land in the temp dir
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  live.add(proc);
  let err = "";
  let exited = null;
  const exitP = new Promise((resolve) => {
    proc.on("close", (code, signal) => { exited = { code, signal }; live.delete(proc); resolve(exited); });
  });
  let notify = () => {};
  let logWaiters = [];
  const onOut = (d) => {
    err += d;
    const w = logWaiters;
    logWaiters = [];
    for (const f of w) f();
    notify();
  };
  proc.stdout.on("data", onOut);
  proc.stderr.on("data", onOut);
  const ports = await new Promise((resolve, reject) => {
    const re = /listening on https?:\/\/[^:\s]+:(\d+)/g;
    const t = setTimeout(() => {
      done();
      reject(new Error(`server did not log ${servers} "listening on" line(s) within 10 s; output:\n${err}`));
    }, 10000);
    const onExit = () => {
      done();
      reject(new Error(`server exited early (${JSON.stringify(exited)}); output:\n${err}`));
    };
    function done() { clearTimeout(t); notify = () => {}; proc.off("close", onExit); }
    notify = () => {
      const found = [...err.matchAll(re)].map((m) => Number(m[1]));
      if (found.length >= servers) { done(); resolve(found); }
    };
    proc.on("close", onExit);
    proc.on("error", (e) => { done(); reject(e); });
    notify();
  });
  const port = ports[0];
  let stopped = null;
  return {
    proc,
    pid: proc.pid,
    port,
    ports,
    url: `${/listening on https:/.test(err) ? "https" : "http"}://127.0.0.1:${port}`,
    stderr: () => err,
    // waitLog: resolves once the server's output matches re (logs travel through a pipe and
    // can arrive after socket traffic the server sent later).
    waitLog(re, ms = 5000) {
      return withTimeout(new Promise((resolve) => {
        const check = () => (re.test(err) ? resolve(err) : logWaiters.push(check));
        check();
      }), ms, `server output matching ${re} (output so far:\n${err.split("\n").slice(-20).join("\n")})`);
    },
    alive: () => exited === null,
    // stop: SIGTERM, then SIGKILL after 3 s. Resolves {code, signal, forced, stderr}.
    async stop() {
      if (stopped) return stopped;
      let forced = false;
      if (exited === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => { forced = true; proc.kill("SIGKILL"); }, 3000);
        await exitP;
        clearTimeout(t);
      }
      stopped = { ...exited, forced, stderr: err };
      return stopped;
    },
  };
}

// assertCleanExit: the result of stop() shows a graceful exit: no crash signal, no forced
// kill, exit status 0 and no sanitizer report. Throws an Error describing what went wrong.
export function assertCleanExit(r) {
  const problems = [];
  if (r.forced) problems.push("did not exit within 3 s of SIGTERM (had to SIGKILL)");
  else if (r.signal) problems.push(`killed by signal ${r.signal}`);
  else if (r.code !== 0) problems.push(`exit status ${r.code} after SIGTERM`);
  const san = sanitizerErrors(r.stderr);
  if (san.length) problems.push(`sanitizer: ${san.slice(0, 5).join(" | ")}`);
  if (problems.length) {
    const tail = r.stderr.split("\n").slice(-40).join("\n");
    throw new Error(`server shutdown not clean: ${problems.join("; ")}\n--- stderr tail ---\n${tail}`);
  }
}

// rssKiB: VmRSS of a process in KiB (Linux /proc).
export function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) : NaN;
}

// ---------------------------------------------------------------- socket.io-client helpers

// Client modes: websocket only, the default (polling first, then upgrade), polling only.
export const MODES = {
  websocket: { transports: ["websocket"] },
  "polling+upgrade": {},
  "polling-only": { transports: ["polling"] },
};

// client: a socket.io-client socket with its own Manager, no reconnection.
export function client(url, opts = {}) {
  return io(url, { forceNew: true, reconnection: false, timeout: 5000, ...opts });
}

// connected: resolves with the socket once it connected; rejects with the connect_error.
export function connected(sock, ms = 8000) {
  if (sock.connected) return Promise.resolve(sock);
  return withTimeout(new Promise((resolve, reject) => {
    const ok = () => { sock.off("connect_error", bad); resolve(sock); };
    const bad = (e) => { sock.off("connect", ok); reject(e); };
    sock.once("connect", ok);
    sock.once("connect_error", bad);
  }), ms, `connect of ${sock.nsp}`);
}

// connectError: resolves with the Error of the next connect_error (rejects on connect).
export function connectError(sock, ms = 8000) {
  return withTimeout(new Promise((resolve, reject) => {
    const bad = (e) => { sock.off("connect", ok); resolve(e); };
    const ok = () => { sock.off("connect_error", bad); reject(new Error(`${sock.nsp} connected, expected connect_error`)); };
    sock.once("connect", ok);
    sock.once("connect_error", bad);
  }), ms, `connect_error of ${sock.nsp}`);
}

// once: resolves with the argument array of the next `ev` on an EventEmitter-like object.
export function once(em, ev, ms = 5000) {
  return withTimeout(new Promise((resolve) => em.once(ev, (...a) => resolve(a))), ms, `event "${ev}"`);
}

// Inbox: records every `ev` received by a socket (as argument arrays) so tests can await the
// next one, or the first one matching a predicate, in arrival order.
export class Inbox {
  constructor(sock, ev) {
    this.ev = ev;
    this.items = [];
    this.pos = 0;
    this.waiters = [];
    sock.on(ev, (...args) => { this.items.push(args); this.wake(); });
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  // next: the next unread argument array.
  next(ms = 5000) {
    return this.until(() => true, ms);
  }
  // until: skips unread items until pred(args) holds; resolves with that item.
  until(pred, ms = 5000) {
    return withTimeout(new Promise((resolve) => {
      const scan = () => {
        while (this.pos < this.items.length) {
          const it = this.items[this.pos++];
          if (pred(it)) return resolve(it);
        }
        this.waiters.push(scan);
      };
      scan();
    }), ms, `"${this.ev}" (${this.items.length} received so far: ${JSON.stringify(this.items.slice(-3))})`);
  }
  // count: resolves once at least n items arrived in total.
  count(n, ms = 5000) {
    return withTimeout(new Promise((resolve) => {
      const check = () => (this.items.length >= n ? resolve(this.items) : this.waiters.push(check));
      check();
    }), ms, `${n} "${this.ev}" events (got ${this.items.length})`);
  }
}

// closeAll: disconnect sockets (and their Managers).
export function closeAll(...socks) {
  for (const s of socks) {
    try { s.io.engine?.close(); s.disconnect(); } catch { /* */ }
  }
}

// ---------------------------------------------------------------- HTTP helpers

// api: POST /api/publish; resolves {status, body (parsed JSON or null), text, headers}.
export async function api(port, body, { raw = false, headers = {} } = {}) {
  const res = await fetch(`http://127.0.0.1:${port}/api/publish`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: raw ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json, text, headers: res.headers };
}

// publish: API publish that must succeed; returns the message ids.
export async function publish(port, msgs) {
  const r = await api(port, msgs);
  if (r.status !== 200) throw new Error(`/api/publish answered ${r.status}: ${r.text}`);
  return r.body.messageIds;
}

// rawHttp: write `data` on a fresh TCP connection and collect everything the server sends
// until it closes the connection or `ms` pass. Resolves {text, closed}.
export function rawHttp(port, data, { ms = 3000, end = false, chunks } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let text = "";
    let closed = false;
    const finish = () => { clearTimeout(t); s.destroy(); resolve({ text, closed }); };
    const t = setTimeout(finish, ms);
    s.on("data", (d) => { text += d.toString("latin1"); });
    s.on("error", () => { /* reset counts as closed */ });
    s.on("close", () => { closed = true; finish(); });
    s.on("connect", async () => {
      for (const c of chunks || [data]) {
        if (s.destroyed) break;
        s.write(c);
        if (chunks) await sleep(20);
      }
      if (end) s.end();
    });
  });
}

// statusOf: the status code of a raw HTTP response text (0 if none).
export function statusOf(text) {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
  return m ? Number(m[1]) : 0;
}

// ---------------------------------------------------------------- Engine.IO helpers

export const RS = "\x1e";

export function eioUrl(port, query, pathName = "/socket.io/") {
  return `http://127.0.0.1:${port}${pathName}?${query}`;
}

// eioGet / eioPost: raw polling requests. Resolve {status, body, headers}.
export async function eioGet(port, query, { ms = 5000, signal } = {}) {
  const res = await fetch(eioUrl(port, query), { signal: signal || AbortSignal.timeout(ms) });
  return { status: res.status, body: await res.text(), headers: res.headers };
}
export async function eioPost(port, query, body, { ms = 5000, headers = {} } = {}) {
  const res = await fetch(eioUrl(port, query), {
    method: "POST",
    headers: { "content-type": "text/plain;charset=UTF-8", ...headers },
    body,
    signal: AbortSignal.timeout(ms),
  });
  return { status: res.status, body: await res.text(), headers: res.headers };
}

// handshake: polling handshake; returns the parsed open packet.
export async function handshake(port) {
  const r = await eioGet(port, "EIO=4&transport=polling");
  if (r.status !== 200 || r.body[0] !== "0") {
    throw new Error(`polling handshake failed: ${r.status} ${JSON.stringify(r.body)}`);
  }
  return JSON.parse(r.body.slice(1));
}

// pollUntil: GET repeatedly (answering pings with a POST "3" when pong is true) until the
// accumulated packets satisfy pred; resolves with all packets seen.
export async function pollUntil(port, sid, pred, { ms = 5000, pong = true } = {}) {
  const deadline = Date.now() + ms;
  const seen = [];
  while (Date.now() < deadline) {
    const r = await eioGet(port, `EIO=4&transport=polling&sid=${sid}`, { ms: deadline - Date.now() + 100 });
    if (r.status !== 200) throw new Error(`poll answered ${r.status} ${r.body} (packets so far ${JSON.stringify(seen)})`);
    const pk = r.body.split(RS);
    seen.push(...pk);
    if (pong && pk.includes("2")) await eioPost(port, `EIO=4&transport=polling&sid=${sid}`, "3");
    if (pred(seen)) return seen;
  }
  throw new Error(`timed out polling; packets: ${JSON.stringify(seen)}`);
}

// WsClient: a `ws` WebSocket with a queue of received messages (text as string, binary as
// Buffer), so tests can await frames in order. Listeners are attached before any data can
// arrive (several frames may come in one TCP read).
export class WsClient {
  constructor(url, opts = {}) {
    this.ws = new WebSocket(url, { perMessageDeflate: false, ...opts });
    this.msgs = [];
    this.waiters = [];
    this.closeInfo = null;
    this.errors = [];
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", resolve);
      this.ws.once("unexpected-response", (req, res) => {
        reject(Object.assign(new Error(`unexpected response ${res.statusCode}`), { status: res.statusCode }));
      });
      this.ws.once("error", reject);
    });
    this.opened.catch(() => { /* observed by callers that care */ });
    this.ws.on("message", (data, isBinary) => {
      this.msgs.push(isBinary ? Buffer.from(data) : data.toString());
      this.wake();
    });
    this.ws.on("error", (e) => { this.errors.push(e); });
    this.closed = new Promise((resolve) => {
      this.ws.on("close", (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() };
        this.wake();
        resolve(this.closeInfo);
      });
    });
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  // next: the next message; skipPings drops Engine.IO pings ("2") and answers them ("3").
  next(ms = 5000, { skipPings = true } = {}) {
    return withTimeout(new Promise((resolve, reject) => {
      const scan = () => {
        while (this.msgs.length) {
          const m = this.msgs.shift();
          if (skipPings && m === "2") { this.send("3"); continue; }
          return resolve(m);
        }
        if (this.closeInfo) return reject(new Error(`websocket closed (${JSON.stringify(this.closeInfo)}) while waiting for a message`));
        this.waiters.push(scan);
      };
      scan();
    }), ms, "a websocket message");
  }
  send(data) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(data);
  }
  // waitClose: resolves {code, reason} when the server closed the socket within ms.
  waitClose(ms = 5000) {
    return withTimeout(this.closed, ms, "the websocket to close");
  }
  close() {
    try { this.ws.terminate(); } catch { /* */ }
  }
}

// wsOpen: open a raw Engine.IO websocket session and read the open packet.
export async function wsOpen(port, query = "") {
  const c = new WsClient(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket${query}`);
  await withTimeout(c.opened, 5000, "websocket open");
  const open = await c.next();
  if (typeof open !== "string" || open[0] !== "0") throw new Error(`expected open packet, got ${JSON.stringify(open)}`);
  c.handshake = JSON.parse(open.slice(1));
  return c;
}

// ---------------------------------------------------------------- hand-made WebSocket (net)

// wsFrame: a masked client frame (fin=1) with the given opcode and payload.
export function wsFrame(opcode, payload, { mask = true, fin = true, lengthOverride } = {}) {
  const data = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = lengthOverride ?? data.length;
  let head;
  if (len < 126) {
    head = Buffer.alloc(2);
    head[1] = len;
  } else if (len < 65536) {
    head = Buffer.alloc(4);
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  head[0] = (fin ? 0x80 : 0) | opcode;
  if (!mask) return Buffer.concat([head, data]);
  head[1] |= 0x80;
  const key = crypto.randomBytes(4);
  const body = Buffer.alloc(data.length);
  for (let i = 0; i < data.length; i++) body[i] = data[i] ^ key[i & 3];
  return Buffer.concat([head, key, body]);
}

// RawWs: a WebSocket client written on a bare net socket, so a test can stop reading
// (pause()) and make the server face real TCP backpressure. Parses unmasked server frames.
export class RawWs {
  static async connect(port, pathQuery = "/socket.io/?EIO=4&transport=websocket") {
    const c = new RawWs();
    await c.open(port, pathQuery);
    return c;
  }
  constructor() {
    this.buf = Buffer.alloc(0);
    this.msgs = [];
    this.waiters = [];
    this.closed = false;
    this.bytes = 0;
    this.reads = 0; // TCP reads (data events): frames parsed in one read arrived together
  }
  open(port, pathQuery) {
    return withTimeout(new Promise((resolve, reject) => {
      const key = crypto.randomBytes(16).toString("base64");
      this.sock = net.connect(port, "127.0.0.1", () => {
        this.sock.write(`GET ${pathQuery} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\n` +
          `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      });
      let head = true;
      this.sock.on("data", (d) => {
        this.bytes += d.length;
        this.reads++;
        this.buf = Buffer.concat([this.buf, d]);
        if (head) {
          const i = this.buf.indexOf("\r\n\r\n");
          if (i < 0) return;
          const h = this.buf.subarray(0, i).toString("latin1");
          this.buf = this.buf.subarray(i + 4);
          head = false;
          if (!/^HTTP\/1\.1 101/.test(h)) return reject(new Error(`no 101: ${h.split("\r\n")[0]}`));
          const accept = crypto.createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
          if (!new RegExp(`sec-websocket-accept:\\s*${accept.replace(/[+/=]/g, "\\$&")}`, "i").test(h)) {
            return reject(new Error(`bad Sec-WebSocket-Accept in: ${h}`));
          }
          resolve();
        }
        this.parse();
      });
      this.sock.on("error", (e) => { this.error = e; });
      this.sock.on("close", () => { this.closed = true; this.wake(); reject(new Error("closed during handshake")); });
    }), 5000, "raw websocket handshake");
  }
  parse() {
    for (;;) {
      const b = this.buf;
      if (b.length < 2) return;
      const op = b[0] & 0x0f;
      let len = b[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (b.length < 4) return; len = b.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (b.length < 10) return; len = Number(b.readBigUInt64BE(2)); off = 10; }
      if (b[1] & 0x80) { off += 4; } // servers must not mask; tolerate for parsing
      if (b.length < off + len) return;
      const payload = b.subarray(off, off + len);
      this.buf = b.subarray(off + len);
      if (op === 0x1) this.msgs.push(payload.toString());
      else if (op === 0x2) this.msgs.push(Buffer.from(payload));
      else if (op === 0x8) this.msgs.push({ close: payload.length >= 2 ? payload.readUInt16BE(0) : null });
      this.wake();
    }
  }
  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
  sendText(s) { this.sock.write(wsFrame(0x1, s)); }
  // until: resolves with the first message (pings answered) satisfying pred.
  until(pred, ms = 5000) {
    return withTimeout(new Promise((resolve, reject) => {
      const scan = () => {
        while (this.msgs.length) {
          const m = this.msgs.shift();
          if (m === "2") { this.sendText("3"); continue; }
          if (pred(m)) return resolve(m);
        }
        if (this.closed) return reject(new Error("raw websocket closed"));
        this.waiters.push(scan);
      };
      scan();
    }), ms, "a raw websocket message");
  }
  pause() { this.sock.pause(); }
  resume() { this.sock.resume(); }
  destroy() { this.sock.destroy(); }
}

// ---------------------------------------------------------------- Lua config snippets

// LUA_APP: an onEvent handler implementing a small Socket.IO app used by several files.
//   echo(...)   -> emits "echo" with the same args; acks with the same args
//   rpc(a, b)   -> acks a + b
//   ping()      -> acks "pong" (an ordering barrier: events on a socket are handled in order)
//   whoami()    -> acks client.id and the auth token onConnect saw
//   push(n)     -> emits "pushed" i for i = 1..n (server-initiated events)
//   kick()      -> client:disconnect()
//   noargs()    -> acks with no arguments
//   double()    -> calls ack twice (only the first may reach the client)
//   boom()      -> raises a Lua error (logged with file:line; the gateway goes on)
export const LUA_APP = `
local unpack = unpack or table.unpack
local tokens = {}
local function app_connect(client, auth)
  tokens[client.id] = (type(auth) == "table" and auth.token) or false
  return true
end
local function app_event(client, event, args, ack)
  if event == "echo" then
    client:emit("echo", unpack(args, 1, #args))
    if ack then ack(unpack(args, 1, #args)) end
  elseif event == "rpc" then
    if ack then ack(args[1] + args[2]) end
  elseif event == "ping" then
    if ack then ack("pong") end
  elseif event == "whoami" then
    if ack then ack(client.id, tokens[client.id] or "none") end
  elseif event == "push" then
    for i = 1, args[1] do client:emit("pushed", i) end
  elseif event == "kick" then
    client:disconnect()
  elseif event == "noargs" then
    if ack then ack() end
  elseif event == "double" then
    if ack then ack(1); ack(2) end
  elseif event == "boom" then
    error("kaboom from the app")
  end
end
`;

// ---------------------------------------------------------------- TLS

// makePki: a test certificate authority in dir, made with the `openssl` command. Returns
// {dir, ca (path of the CA certificate PEM), caPem, issue(opts)}; issue({name, serial,
// start, end, days, keyOf, password}) writes <name>.pem (a server certificate for localhost
// and 127.0.0.1 signed by the CA, serial given in hex) and <name>.key (a new P-256 key, or
// the key file keyOf when given; encrypted with password when given) and returns
// {cert, key, serial}. start/end are openssl dates (YYYYMMDDHHMMSSZ), for expired ones.
export function makePki(dir = tmpDir("sluice-pki-")) {
  const run = (args, what) => {
    const r = spawnSync("openssl", args, { cwd: dir, encoding: "utf8" });
    if (r.error || r.status !== 0) {
      throw new Error(`openssl ${what} failed: ${r.error ? r.error.message : r.stderr}`);
    }
  };
  mkdirSync(path.join(dir, "newcerts"), { recursive: true });
  writeFileSync(path.join(dir, "index.txt"), "");
  writeFileSync(path.join(dir, "ca.cnf"), [
    "[ ca ]", "default_ca = d", "[ d ]", "dir = .", "database = ./index.txt",
    "new_certs_dir = ./newcerts", "certificate = ./ca.pem", "private_key = ./ca.key",
    "serial = ./serial", "default_md = sha256", "policy = p", "unique_subject = no",
    "x509_extensions = ext", "[ p ]", "commonName = supplied", "[ ext ]",
    "subjectAltName = DNS:localhost,IP:127.0.0.1", "basicConstraints = CA:FALSE", "",
  ].join("\n"));
  run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
    "-keyout", "ca.key", "-out", "ca.pem", "-days", "3", "-subj", "/CN=Sluice Test CA"], "CA");
  const pki = {
    dir,
    ca: path.join(dir, "ca.pem"),
    caPem: readFileSync(path.join(dir, "ca.pem"), "utf8"),
    issue({ name = "server", serial = "1001", start, end, days = 2, keyOf, password } = {}) {
      const key = path.join(dir, `${name}.key`);
      if (keyOf) {
        writeFileSync(key, readFileSync(keyOf));
      } else {
        run(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key,
          ...(password ? ["-aes-256-cbc", "-pass", `pass:${password}`] : [])], "key");
      }
      run(["req", "-new", "-key", key, "-out", `${name}.csr`, "-subj", "/CN=localhost",
        ...(password ? ["-passin", `pass:${password}`] : [])], "request");
      writeFileSync(path.join(dir, "serial"), `${serial}\n`);
      const dates = start ? ["-startdate", start, "-enddate", end] : ["-days", String(days)];
      run(["ca", "-batch", "-config", "ca.cnf", "-in", `${name}.csr`, "-out", `${name}.pem`,
        "-notext", ...dates], "certificate");
      return { cert: path.join(dir, `${name}.pem`), key, serial: serial.toUpperCase() };
    },
  };
  return pki;
}
