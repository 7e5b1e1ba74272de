// delivery-helpers.mjs - plumbing for the delivery-engine tests (delivery-*.test.mjs):
// Lua config generation, Prometheus text parsing, a hand-made Socket.IO client on a raw
// WebSocket that can stop reading (so the server faces real TCP backpressure), and a helper
// that backs a paused client's connection up until the server starts holding messages in
// its lanes. Builds on helpers.mjs (which belongs to the other e2e files: not edited here).
import { readFileSync, readdirSync, statSync, existsSync } from "node:fs";
import path from "node:path";
import { RawWs, publish, withTimeout, startServer } from "./helpers.mjs";

// ---------------------------------------------------------------- Lua config

// lua(text): a raw Lua expression to embed as-is by luaValue (functions, references).
export const lua = (text) => ({ __lua: text });

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

// luaValue: a JavaScript value as a Lua literal (objects -> tables, arrays -> sequences).
export function luaValue(v, indent = "") {
  if (v === null || v === undefined) return "nil";
  if (typeof v === "object" && "__lua" in v) return v.__lua;
  if (typeof v === "boolean" || typeof v === "number") return String(v);
  if (typeof v === "string") {
    return '"' + v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n") + '"';
  }
  const inner = indent + "  ";
  if (Array.isArray(v)) return "{ " + v.map((x) => luaValue(x, inner)).join(", ") + " }";
  const parts = Object.entries(v).map(([k, x]) =>
    `${inner}${IDENT.test(k) ? k : `[${luaValue(k)}]`} = ${luaValue(x, inner)},`);
  return "{\n" + parts.join("\n") + `\n${indent}}`;
}

// serverConfig: a Lua config with one server "main" on 127.0.0.1, an OS-assigned port,
// a small send buffer and high-water mark (so a paused client backs up quickly), the given
// namespaces and any extra server keys. `prelude` is Lua code placed before the return.
// drainTimeoutMs is short: these tests stop the server with paused clients whose lanes never
// empty, and a SIGTERM drain would otherwise wait the default 10 s for them.
export function serverConfig(namespaces, server = {}, prelude = "") {
  const main = {
    host: "127.0.0.1", port: 0, socketHighWaterBytes: 4096, socketSendBufferBytes: 4096, drainTimeoutMs: 500,
    ...server, namespaces,
  };
  return `${prelude}\nreturn ${luaValue({ servers: { main } })}\n`;
}

// startDelivery: startServer with serverConfig(...).
export function startDelivery(namespaces, server = {}, { prelude = "", ...opts } = {}) {
  return startServer(serverConfig(namespaces, server, prelude), opts);
}

// ---------------------------------------------------------------- metrics

// metrics: GET /metrics parsed into [{name, labels, value}].
export async function metrics(port) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return parseProm(await res.text());
}

export function parseProm(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[3]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[3]))) labels[l[1]] = l[2].replace(/\\n/g, "\n").replace(/\\(.)/g, "$1");
    }
    out.push({ name: m[1], labels, value: Number(m[4]) });
  }
  return out;
}

// mval: the sum of the samples of `name` whose labels include `labels` (0 when none).
export function mval(list, name, labels = {}) {
  let sum = 0;
  for (const s of list) {
    if (s.name !== name) continue;
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value;
  }
  return sum;
}

// metric: fetch /metrics and return one value (see mval).
export async function metric(port, name, labels = {}) {
  return mval(await metrics(port), name, labels);
}

// waitMetric: poll /metrics until pred(value) holds; resolves with the value.
export async function waitMetric(port, name, labels, pred, ms = 5000) {
  const deadline = Date.now() + ms;
  let v;
  for (;;) {
    v = await metric(port, name, labels);
    if (pred(v)) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${name}${JSON.stringify(labels)} (last value ${v})`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------- a pausable Socket.IO client

// RawSio: a Socket.IO v5 client (one namespace) on a hand-made WebSocket (helpers.mjs RawWs),
// so that pause() really stops reading from the TCP socket. Records every delivery
// {topic, args, payload, meta} in arrival order; answers pings; supports ack ids.
export class RawSio extends RawWs {
  static async connect(port, nsp) {
    const c = new RawSio(nsp);
    await c.open(port, "/socket.io/?EIO=4&transport=websocket");
    await c.waitFor(() => c.handshake, 5000, "the Engine.IO open packet");
    c.sendText(nsp === "/" ? "40" : `40${nsp},`);
    await c.waitFor(() => c.sid || c.connectError, 5000, `the CONNECT reply for ${nsp}`);
    if (c.connectError) throw new Error(`connect to ${nsp} refused: ${c.connectError}`);
    return c;
  }
  constructor(nsp) {
    super();
    this.nsp = nsp;
    this.prefix = nsp === "/" ? "" : `${nsp},`;
    this.handshake = null;
    this.sid = null;
    this.connectError = null;
    this.deliveries = [];
    this.events = [];
    this.acks = new Map();
    this.nextAck = 1;
    this.watchers = [];
    this.closeCode = null;
  }
  // wake (called by RawWs.parse for every frame): consume the frames here.
  wake() {
    while (this.msgs.length) this.handle(this.msgs.shift());
    const w = this.watchers;
    this.watchers = [];
    for (const f of w) f();
  }
  handle(m) {
    if (typeof m === "object" && !Buffer.isBuffer(m)) { this.closeCode = m.close; return; }
    if (typeof m !== "string") return;
    if (m === "2") { this.sendText("3"); return; }
    if (m[0] === "0") { this.handshake = JSON.parse(m.slice(1)); return; }
    if (m[0] !== "4") return;
    const body = m.slice(1);
    const type = body[0];
    let rest = body.slice(1);
    if (this.prefix) {
      if (!rest.startsWith(this.prefix)) return;
      rest = rest.slice(this.prefix.length);
    }
    if (type === "0") { this.sid = JSON.parse(rest).sid; return; }
    if (type === "4") { this.connectError = rest; return; }
    const idm = /^(\d*)/.exec(rest);
    const id = idm[1] ? Number(idm[1]) : null;
    const data = JSON.parse(rest.slice(idm[1].length));
    if (type === "3") { this.acks.set(id, data); return; }
    if (type === "2") {
      const [ev, ...args] = data;
      const rec = { topic: ev, args, payload: args[0], meta: args[1], at: Date.now(), read: this.reads };
      this.events.push(rec);
      this.deliveries.push(rec);
    }
  }
  // waitFor: resolves once pred() is truthy (checked after every received frame).
  waitFor(pred, ms = 5000, what = "a condition") {
    return withTimeout(new Promise((resolve, reject) => {
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { return reject(e); }
        if (v) return resolve(v);
        if (this.closed) return reject(new Error(`connection closed while waiting for ${what}`));
        this.watchers.push(check);
      };
      check();
    }), ms, what);
  }
  emit(ev, ...args) {
    this.sendText(`42${this.prefix}${JSON.stringify([ev, ...args])}`);
  }
  // emitWithAck: emit with an ack id; resolves with the ack's arguments (first one unwrapped).
  async emitWithAck(ev, ...args) {
    const id = this.nextAck++;
    this.sendText(`42${this.prefix}${id}${JSON.stringify([ev, ...args])}`);
    const data = await this.waitFor(() => this.acks.get(id), 5000, `the ack of ${ev} #${id}`);
    return data.length === 1 ? data[0] : data;
  }
  async subscribe(topic) {
    const r = await this.emitWithAck("subscribe", { topic });
    if (!r || r.ok !== true) throw new Error(`subscribe ${topic} answered ${JSON.stringify(r)}`);
  }
  // of: the deliveries of one topic so far.
  of(topic) { return this.deliveries.filter((d) => d.topic === topic); }
  // waitCount: resolves once `n` deliveries of topic arrived.
  waitCount(topic, n, ms = 5000) {
    return this.waitFor(() => this.of(topic).length >= n, ms,
      `${n} deliveries of "${topic}" (got ${this.of(topic).length}: ${JSON.stringify(this.of(topic).slice(-3).map((d) => d.payload))})`);
  }
  waitPayload(topic, pred, ms = 5000) {
    return this.waitFor(() => this.of(topic).find((d) => pred(d.payload)), ms,
      `a "${topic}" delivery matching ${pred} (got ${this.of(topic).length})`);
  }
}

// backUp: with `sub` paused, publish fill messages (size bytes each, one per request) on
// ns/topic until the server holds at least one in that lane, i.e. the connection's unsent
// bytes are over the high-water mark and the kernel buffers on both sides are full.
// Returns the number of fill messages published.
export async function backUp(port, ns, topic, { size = 16000, max = 600 } = {}) {
  const pad = "f".repeat(size);
  let held = 0;
  for (let i = 1; i <= max; i++) {
    await publish(port, { namespace: ns, topic, payload: { fill: i, pad } });
    const q = await metric(port, "sluice_queued_messages", { namespace: ns, topic });
    // twice in a row: the first sighting could be a write the kernel has not taken yet
    held = q >= 1 ? held + 1 : 0;
    if (held >= 2) return i;
  }
  throw new Error(`${ns}/${topic}: the server never held a message for the paused client after ${max} x ${size} bytes`);
}

// ---------------------------------------------------------------- processes and files

// cpuTicks: utime + stime of a process in clock ticks (/proc/<pid>/stat).
export function cpuTicks(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // fields 14 and 15 of stat(5)
}

// entries: readdir that treats a directory removed meanwhile as empty (the server removes
// spill directories while tests look at them).
function entries(d) {
  try { return readdirSync(d, { withFileTypes: true }); } catch (e) {
    if (e.code === "ENOENT" || e.code === "ENOTDIR") return [];
    throw e;
  }
}

// filesUnder: every regular file below dir (recursive), [] when dir does not exist.
export function filesUnder(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  const walk = (d) => {
    for (const e of entries(d)) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk(dir);
  return out;
}

// dirsUnder: every directory below dir (recursive, dir itself excluded).
export function dirsUnder(dir) {
  const out = [];
  if (!existsSync(dir)) return out;
  const walk = (d) => {
    for (const e of entries(d)) {
      if (!e.isDirectory()) continue;
      const p = path.join(d, e.name);
      out.push(p);
      walk(p);
    }
  };
  walk(dir);
  return out;
}

// waitUntil: poll pred() (sync or async) every `every` ms until truthy; resolves its value.
export async function waitUntil(pred, ms = 5000, what = "a condition", every = 20) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

export function fileSize(p) {
  try { return statSync(p).size; } catch { return -1; }
}

// seqs: the `seq` fields of a list of deliveries.
export const seqs = (ds) => ds.map((d) => d.payload?.seq);

// assertIncreasing: throws unless the numbers strictly increase.
export function increasingViolation(list) {
  for (let i = 1; i < list.length; i++) if (!(list[i] > list[i - 1])) return `${list[i]} after ${list[i - 1]} at index ${i}`;
  return null;
}
