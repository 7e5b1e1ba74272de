// socketio.test.mjs - Socket.IO v5 with the real socket.io-client, for every client mode
// (websocket only, polling then upgrade, polling only): connecting to "/" and to configured
// namespaces, several namespaces on one Manager, invalid namespaces, CONNECT auth reaching
// onConnect and refusals, events and acks both ways through a Lua onEvent app, binary
// (BINARY_EVENT / BINARY_ACK) round trips, and the server kicking a socket.
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, client, connected, connectError, once, Inbox, closeAll, MODES,
  LUA_APP,
} from "./helpers.mjs";

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      engineIoTransport = "WEBSOCKET_OR_POLLING",
      namespaces = {
        { path = "/app", topics = { "t" }, onConnect = app_connect, onEvent = app_event },
        { path = "/other", topics = { "t" }, onEvent = app_event },
        { path = "/feed", topics = { "prices" } },
        { path = "/secure", topics = { "t" }, onEvent = app_event,
          onConnect = function(client, auth)
            if type(auth) == "table" and auth.token == "letmein" then return true end
            return false, "bad token"
          end },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

// rawTrace: records the Engine.IO packets a client receives (type "message" data only).
function rawTrace(sock) {
  const seen = [];
  sock.io.engine.on("packet", (p) => { if (p.type === "message") seen.push(p.data); });
  return seen;
}

for (const [mode, opts] of Object.entries(MODES)) {
  describe(`socket.io client (${mode})`, () => {
    it('connects to "/" with a socket id distinct from the Engine.IO sid', async () => {
      const s = client(srv.url, opts);
      try {
        await connected(s);
        assert.equal(typeof s.id, "string");
        assert.ok(s.id.length > 0);
        assert.notEqual(s.id, s.io.engine.id, "socket id must not reuse the Engine.IO sid");
      } finally { closeAll(s); }
    });

    it("connects to /feed", async () => {
      const s = client(`${srv.url}/feed`, opts);
      try {
        await connected(s);
        assert.ok(s.id);
        assert.equal(s.nsp, "/feed");
      } finally { closeAll(s); }
    });

    if (mode === "polling+upgrade") {
      it("upgrades from polling to websocket", async () => {
        const s = client(`${srv.url}/app`, opts);
        try {
          await connected(s);
          if (s.io.engine.transport.name !== "websocket") await once(s.io.engine, "upgrade", 8000);
          assert.equal(s.io.engine.transport.name, "websocket");
          // the session still works after the upgrade
          assert.equal(await s.timeout(3000).emitWithAck("rpc", 20, 22), 42);
        } finally { closeAll(s); }
      });
    }

    it("multiplexes two namespaces over one Manager (io.socket)", async () => {
      const a = client(`${srv.url}/app`, opts);
      try {
        await connected(a);
        const b = a.io.socket("/other");
        await connected(b);
        assert.notEqual(a.id, b.id);
        assert.equal(a.io, b.io, "same Manager");
        assert.equal(await b.timeout(3000).emitWithAck("rpc", 1, 2), 3);
        assert.equal(await a.timeout(3000).emitWithAck("rpc", 3, 4), 7);
        b.disconnect();
        // leaving one namespace keeps the other (and the session) working
        assert.equal(await a.timeout(3000).emitWithAck("rpc", 5, 6), 11);
      } finally { closeAll(a); }
    });

    it('invalid namespace -> connect_error "Invalid namespace"; the other namespace stays up', async () => {
      const a = client(`${srv.url}/app`, opts);
      try {
        await connected(a);
        const bad = a.io.socket("/nope");
        const err = await connectError(bad);
        assert.equal(err.message, "Invalid namespace");
        assert.equal(a.connected, true);
        assert.equal(await a.timeout(3000).emitWithAck("rpc", 2, 2), 4);
        // and a valid namespace can still be joined on the same session afterwards
        const o = a.io.socket("/other");
        await connected(o);
        assert.equal(await o.timeout(3000).emitWithAck("ping"), "pong");
      } finally { closeAll(a); }
    });

    it("invalid namespace as the only namespace -> connect_error", async () => {
      const s = client(`${srv.url}/does/not/exist`, opts);
      try {
        const err = await connectError(s);
        assert.equal(err.message, "Invalid namespace");
      } finally { closeAll(s); }
    });

    it("passes the CONNECT auth payload to onConnect", async () => {
      const s = client(`${srv.url}/app`, { ...opts, auth: { token: "tok-123" } });
      try {
        await connected(s);
        const res = await new Promise((resolve, reject) => {
          s.timeout(3000).emit("whoami", (err, id, token) => (err ? reject(err) : resolve([id, token])));
        });
        assert.deepEqual(res, [s.id, "tok-123"]);
      } finally { closeAll(s); }
    });

    it("onConnect refusal -> connect_error with the reason; accepted with the right token", async () => {
      const bad = client(`${srv.url}/secure`, { ...opts, auth: { token: "wrong" } });
      const good = client(`${srv.url}/secure`, { ...opts, auth: { token: "letmein" } });
      try {
        const err = await connectError(bad);
        assert.equal(err.message, "bad token");
        assert.equal(bad.connected, false);
        await connected(good);
        assert.equal(await good.timeout(3000).emitWithAck("ping"), "pong");
      } finally { closeAll(bad, good); }
    });

    it("client event -> server emit (echo) and ack with several JSON args", async () => {
      const s = client(`${srv.url}/app`, opts);
      try {
        await connected(s);
        const echoes = new Inbox(s, "echo");
        const arg = { a: 1, b: [true, "x", 2.5], c: { d: "é✓" } };
        s.emit("echo", "hello", 42, arg);
        assert.deepEqual(await echoes.next(), ["hello", 42, arg]);
        const acked = await new Promise((resolve, reject) => {
          s.timeout(3000).emit("echo", "with-ack", [1, 2, 3], (err, ...args) => (err ? reject(err) : resolve(args)));
        });
        assert.deepEqual(acked, ["with-ack", [1, 2, 3]]);
        assert.deepEqual(await echoes.next(), ["with-ack", [1, 2, 3]]);
      } finally { closeAll(s); }
    });

    it("rpc with ack; many concurrent acks matched by id", async () => {
      const s = client(`${srv.url}/app`, opts);
      try {
        await connected(s);
        assert.equal(await s.timeout(3000).emitWithAck("rpc", 2, 3), 5);
        const res = await Promise.all(
          Array.from({ length: 50 }, (_, i) => s.timeout(5000).emitWithAck("rpc", i, 1000)),
        );
        assert.deepEqual(res, Array.from({ length: 50 }, (_, i) => i + 1000));
      } finally { closeAll(s); }
    });

    it("server-initiated emits arrive in order", async () => {
      const s = client(`${srv.url}/app`, opts);
      try {
        await connected(s);
        const pushed = new Inbox(s, "pushed");
        s.emit("push", 20);
        const all = await pushed.count(20);
        assert.deepEqual(all.map((a) => a[0]), Array.from({ length: 20 }, (_, i) => i + 1));
      } finally { closeAll(s); }
    });

    it("unknown events are ignored and the socket stays usable", async () => {
      const s = client(`${srv.url}/app`, opts);
      try {
        await connected(s);
        s.emit("no-such-event", 1, 2);
        s.emit("no-such-event-with-ack", (..._a) => {});
        assert.equal(await s.timeout(3000).emitWithAck("rpc", 1, 1), 2);
        assert.equal(s.connected, true);
      } finally { closeAll(s); }
    });

    it("binary round trip: Buffer -> BINARY_EVENT to Lua and back, BINARY_ACK", async () => {
      const s = client(`${srv.url}/app`, opts);
      try {
        await connected(s);
        const trace = rawTrace(s);
        const echoes = new Inbox(s, "echo");
        const bin = Buffer.from([0, 1, 2, 250, 255, 0x1e, 0x0a]);
        const big = Buffer.alloc(70000, 7); // > 64 KiB: WS 64-bit length / long base64 record
        s.emit("echo", bin, "text", { nested: big });
        const [b0, t, obj] = await echoes.next();
        assert.ok(Buffer.isBuffer(b0), `first arg should be a Buffer, got ${typeof b0}`);
        assert.deepEqual([...b0], [...bin]);
        assert.equal(t, "text", "a string stays a string (not binary)");
        assert.ok(Buffer.isBuffer(obj.nested));
        assert.ok(obj.nested.equals(big));
        assert.ok(trace.some((d) => typeof d === "string" && /^52-\/app,\["echo",/.test(d)),
          `expected a BINARY_EVENT 52-/app,["echo",... in ${JSON.stringify(trace.filter((d) => typeof d === "string"))}`);

        const ackArgs = await new Promise((resolve, reject) => {
          s.timeout(3000).emit("echo", Buffer.from("ack-bytes"), (err, ...a) => (err ? reject(err) : resolve(a)));
        });
        assert.ok(Buffer.isBuffer(ackArgs[0]));
        assert.equal(ackArgs[0].toString(), "ack-bytes");
        assert.ok(trace.some((d) => typeof d === "string" && /^61-\/app,\d+\[/.test(d)),
          `expected a BINARY_ACK 61-/app,<id>[... in ${JSON.stringify(trace.filter((d) => typeof d === "string"))}`);
      } finally { closeAll(s); }
    });

    it("an empty Buffer round-trips as binary", async () => {
      const s = client(`${srv.url}/app`, opts);
      try {
        await connected(s);
        const res = await s.timeout(3000).emitWithAck("echo", Buffer.alloc(0));
        assert.ok(Buffer.isBuffer(res), `expected a Buffer, got ${JSON.stringify(res)}`);
        assert.equal(res.length, 0);
      } finally { closeAll(s); }
    });

    it('server kick (client:disconnect()) -> "io server disconnect"', async () => {
      const s = client(`${srv.url}/app`, opts);
      try {
        await connected(s);
        const other = s.io.socket("/other");
        await connected(other);
        const gone = once(s, "disconnect", 5000);
        s.emit("kick");
        const [reason] = await gone;
        assert.equal(reason, "io server disconnect");
        assert.equal(s.connected, false);
        // only that namespace socket is kicked: the session and /other stay up
        assert.equal(await other.timeout(3000).emitWithAck("ping"), "pong");
      } finally { closeAll(s); }
    });
  });
}

test("a Lua error in onEvent is logged with file:line and the gateway goes on", async () => {
  const s = await connected(client(`${srv.url}/app`, MODES.websocket));
  try {
    s.emit("boom");
    assert.equal(await s.timeout(5000).emitWithAck("rpc", 1, 1), 2);
    assert.equal(s.connected, true);
    const log = await srv.waitLog(/kaboom from the app/);
    const line = log.split("\n").find((l) => l.includes("kaboom from the app"));
    assert.match(line, /config\.lua:\d+/, `the error should name config.lua:<line>: ${line}`);
  } finally { closeAll(s); }
});

test("many clients at once (websocket and polling) all get their own acks", async () => {
  const socks = [];
  try {
    for (let i = 0; i < 30; i++) socks.push(client(`${srv.url}/app`, i % 2 ? MODES.websocket : {}));
    await Promise.all(socks.map((s) => connected(s)));
    const res = await Promise.all(socks.map((s, i) => s.timeout(5000).emitWithAck("rpc", i, i)));
    assert.deepEqual(res, socks.map((_, i) => 2 * i));
    assert.equal(new Set(socks.map((s) => s.id)).size, socks.length, "socket ids are unique");
  } finally { closeAll(...socks); }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});

