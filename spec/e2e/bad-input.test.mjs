// bad-input.test.mjs - hostile bytes at every layer (issue "Tests: bad input"): garbage and
// truncated HTTP, oversized headers, lying Content-Length, broken WebSocket upgrades and frames
// (unmasked, reserved opcodes and bits, oversized control frames, absurd lengths, truncation,
// invalid UTF-8), abrupt disconnects. Each gets its error or a closed connection; the server
// never crashes and a normal client still connects afterwards.
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import crypto from "node:crypto";
import {
  startServer, assertCleanExit, LUA_APP, rawHttp, statusOf, wsFrame, client, connected, closeAll,
  MODES, withTimeout, sleep,
} from "./helpers.mjs";

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0, maxPayload = 100000,
      namespaces = {
        { path = "/app", topics = { "t" }, onEvent = app_event },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

// alive: the server still answers HTTP and socket.io.
async function alive() {
  assert.equal(srv.alive(), true, `server process died:\n${srv.stderr().split("\n").slice(-30).join("\n")}`);
  const r = await fetch(`${srv.url}/healthz`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200);
}

const UPGRADE = (key = crypto.randomBytes(16).toString("base64"), extra = "") =>
  `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
  `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;

// wsRaw: open a websocket by hand, send `frames` after the open packet, and report whether
// the server closed the TCP connection (and the close code it sent, if any) within ms.
function wsRaw(frames, { ms = 5000, join = true, endAfter = false } = {}) {
  return new Promise((resolve) => {
    const s = net.connect(srv.port, "127.0.0.1");
    let buf = Buffer.alloc(0);
    let stage = "head";
    let closeCode = null;
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      resolve({ closed, closeCode, stage });
    };
    const t = setTimeout(() => finish(false), ms);
    s.on("error", () => {});
    s.on("close", () => finish(true));
    s.on("connect", () => s.write(UPGRADE()));
    s.on("data", (d) => {
      buf = Buffer.concat([buf, d]);
      if (stage === "head") {
        const i = buf.indexOf("\r\n\r\n");
        if (i < 0) return;
        if (!/^HTTP\/1\.1 101/.test(buf.toString("latin1", 0, i))) return finish(true);
        buf = buf.subarray(i + 4);
        stage = "open";
      }
      // parse server frames
      for (;;) {
        if (buf.length < 2) return;
        const op = buf[0] & 0x0f;
        let len = buf[1] & 0x7f, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (op === 0x8) { closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005; continue; }
        if (op === 0x1 && stage === "open" && payload[0] === 0x30 /* "0" */) {
          stage = "sent";
          const out = join ? [wsFrame(0x1, "40/app,"), ...frames] : frames;
          for (const f of out) s.write(f);
          if (endAfter) s.end();
        }
      }
    });
  });
}

describe("HTTP garbage", () => {
  it("a garbage request line gets 400 or a closed connection", async () => {
    const { text, closed } = await rawHttp(srv.port, "HELLO THERE\r\n\r\n");
    const st = statusOf(text);
    assert.ok(st === 400 || (st === 0 && closed), `got ${JSON.stringify(text.slice(0, 100))} closed=${closed}`);
    await alive();
  });

  it("binary junk gets 400 or a closed connection", async () => {
    const { text, closed } = await rawHttp(srv.port, crypto.randomBytes(65536));
    const st = statusOf(text);
    assert.ok(st === 400 || (st === 0 && closed), `got ${JSON.stringify(text.slice(0, 100))} closed=${closed}`);
    await alive();
  });

  it("truncated headers then close", async () => {
    await rawHttp(srv.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Trunc", { end: true, ms: 1000 });
    await rawHttp(srv.port, "POST /api/publish HTTP/1.1\r\nContent-Le", { end: true, ms: 1000 });
    await rawHttp(srv.port, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n", { end: true, ms: 1000 });
    await alive();
  });

  it("headers over the limit -> 431 or 400", async () => {
    const big = `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(256 * 1024)}\r\n\r\n`;
    const { text, closed } = await rawHttp(srv.port, big);
    const st = statusOf(text);
    assert.ok(st === 431 || st === 400, `status ${st} (${JSON.stringify(text.slice(0, 80))}, closed=${closed})`);
    await alive();
  });

  it("many headers -> 431 or 400", async () => {
    const hdrs = Array.from({ length: 5000 }, (_, i) => `X-H${i}: v`).join("\r\n");
    const { text } = await rawHttp(srv.port, `GET /healthz HTTP/1.1\r\nHost: x\r\n${hdrs}\r\n\r\n`);
    const st = statusOf(text);
    assert.ok(st === 431 || st === 400, `status ${st}`);
    await alive();
  });

  it("a huge Content-Length is refused with 413 without waiting for the body", async () => {
    const { text } = await rawHttp(srv.port,
      "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{", { ms: 3000 });
    assert.equal(statusOf(text), 413, JSON.stringify(text.slice(0, 200)));
    await alive();
  });

  it("a body shorter than its Content-Length, then close", async () => {
    await rawHttp(srv.port, "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"namespace\"", { end: true, ms: 1000 });
    await rawHttp(srv.port, "POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n40", { end: true, ms: 1000 });
    await alive();
  });

  it("invalid chunked encoding gets 400 or a closed connection", async () => {
    const { text, closed } = await rawHttp(srv.port,
      "POST /api/publish HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\nxx\r\n0\r\n\r\n");
    const st = statusOf(text);
    assert.ok(st === 400 || (st === 0 && closed), `status ${st} closed=${closed}`);
    await alive();
  });

  it("a client that never finishes its headers is timed out (408 or close) within 30 s", async () => {
    const { text, closed } = await rawHttp(srv.port, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1", { ms: 30000 });
    const st = statusOf(text);
    assert.ok(closed, `connection still open after 30 s (got ${JSON.stringify(text.slice(0, 80))})`);
    assert.ok(st === 408 || st === 0 || st === 400, `status ${st}`);
    await alive();
  });

  it("bytes dribbled one at a time still make a valid request", async () => {
    const req = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    const { text } = await rawHttp(srv.port, null, { chunks: [...req], ms: 5000 });
    assert.equal(statusOf(text), 200, JSON.stringify(text));
  });

  it("200 connections opened and dropped abruptly", async () => {
    await Promise.all(Array.from({ length: 200 }, (_, i) => new Promise((resolve) => {
      const s = net.connect(srv.port, "127.0.0.1", () => {
        if (i % 3 === 0) s.write("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n");
        if (i % 3 === 1) s.write(UPGRADE());
        setImmediate(() => { s.resetAndDestroy ? s.resetAndDestroy() : s.destroy(); resolve(); });
      });
      s.on("error", () => resolve());
    })));
    await alive();
  });
});

describe("WebSocket upgrade and frame garbage", () => {
  it("an upgrade without Sec-WebSocket-Key is refused with 400", async () => {
    const req = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    const { text, closed } = await rawHttp(srv.port, req);
    const st = statusOf(text);
    assert.ok(st === 400 || (st === 0 && closed), `status ${st}`);
    await alive();
  });

  it("an upgrade with an unsupported Sec-WebSocket-Version is refused (400/426)", async () => {
    const req = UPGRADE(undefined).replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    const { text, closed } = await rawHttp(srv.port, req);
    const st = statusOf(text);
    assert.ok(st === 400 || st === 426 || (st === 0 && closed), `status ${st}`);
    await alive();
  });

  it("an upgrade request on an unknown path is refused (404/400)", async () => {
    const req = UPGRADE().replace("/socket.io/?EIO=4&transport=websocket", "/nope");
    const { text, closed } = await rawHttp(srv.port, req);
    const st = statusOf(text);
    assert.ok(st === 404 || st === 400 || (st === 0 && closed), `status ${st}`);
    await alive();
  });

  const mustClose = (name, frames, opts = {}) => it(name, async () => {
    const r = await wsRaw(frames, opts);
    assert.equal(r.stage, "sent", `the websocket session did not open: ${JSON.stringify(r)}`);
    assert.equal(r.closed, true, `the server did not close the connection: ${JSON.stringify(r)}`);
    if (opts.code) assert.equal(r.closeCode, opts.code, `close code: ${JSON.stringify(r)}`);
    await alive();
  });

  mustClose("an unmasked client frame closes the connection", [wsFrame(0x1, "40", { mask: false })]);
  mustClose("a reserved opcode (0x3) closes the connection", [wsFrame(0x3, "xx")]);
  mustClose("a reserved control opcode (0xB) closes the connection", [wsFrame(0xb, "xx")]);
  mustClose("RSV1 set without an extension closes the connection", [(() => { const f = wsFrame(0x1, "40"); f[0] |= 0x40; return f; })()]);
  mustClose("a continuation frame with nothing to continue closes the connection", [wsFrame(0x0, "40")]);
  mustClose("a fragmented control frame closes the connection", [wsFrame(0x9, "x", { fin: false })]);
  mustClose("a control frame over 125 bytes closes the connection", [wsFrame(0x9, "p".repeat(200))]);
  mustClose("a frame announcing 2^62 bytes (then sending 200 KB of it) closes with 1009",
    [wsFrame(0x1, Buffer.alloc(200000, 0x61), { lengthOverride: 2 ** 62 })], { code: 1009 });
  mustClose("a new data frame inside a fragmented message closes the connection",
    [wsFrame(0x1, '42/app,["ping"', { fin: false }), wsFrame(0x1, "]")]);
  mustClose("invalid UTF-8 in a text frame closes the connection",
    [wsFrame(0x1, Buffer.concat([Buffer.from('42/app,["echo","'), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"]')]))]);
  mustClose("a close frame with a 1-byte payload closes the connection", [wsFrame(0x8, Buffer.from([3]))]);

  it("a truncated frame followed by EOF", async () => {
    const f = wsFrame(0x1, '42/app,["ping"]');
    const r = await wsRaw([f.subarray(0, 5)], { endAfter: true, ms: 3000 });
    assert.equal(r.stage, "sent");
    await alive();
  });

  it("a frame split byte by byte is reassembled", async () => {
    const c = net.connect(srv.port, "127.0.0.1");
    try {
      let got = "";
      let onOpen, onAck;
      const opened = new Promise((r) => { onOpen = r; });
      const ack = new Promise((r) => { onAck = r; });
      c.on("error", () => {});
      c.on("data", (d) => {
        got += d.toString("latin1");
        if (got.includes("0{")) onOpen();
        if (got.includes('43/app,1["pong"]')) onAck();
      });
      await withTimeout(new Promise((r) => c.on("connect", r)), 5000, "connect");
      c.write(UPGRADE());
      await withTimeout(opened, 5000, "the open packet");
      for (const b of wsFrame(0x1, "40/app,")) { c.write(Buffer.from([b])); await sleep(1); }
      for (const b of wsFrame(0x1, '42/app,1["ping"]')) { c.write(Buffer.from([b])); await sleep(1); }
      await withTimeout(ack, 5000, `the ack (got ${JSON.stringify(got.slice(-200))})`);
    } finally { c.destroy(); }
  });
});

test("a normal client still connects after all of it", async () => {
  for (const opts of Object.values(MODES)) {
    const s = await connected(client(`${srv.url}/app`, opts));
    try {
      assert.equal(await s.timeout(5000).emitWithAck("rpc", 4, 5), 9);
    } finally { closeAll(s); }
  }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
