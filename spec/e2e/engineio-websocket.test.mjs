// engineio-websocket.test.mjs - Engine.IO v4 over WebSocket and Socket.IO v5 packets, raw,
// with the `ws` package (PROTOCOL.md §2.6, §3): open packet, CONNECT replies, exact bytes of
// the invalid-namespace error, acks and binary by hand, fragmentation, WS control frames, and
// every invalid packet that must close the connection, plus the message size limit (1009).
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanExit, LUA_APP, wsOpen, WsClient, withTimeout } from "./helpers.mjs";

const MAX_PAYLOAD = 100000;

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0, maxPayload = ${MAX_PAYLOAD},
      namespaces = {
        { path = "/app", topics = { "t" }, onConnect = app_connect, onEvent = app_event },
        { path = "/hello", topics = { "t" }, onEvent = app_event,
          onConnect = function(client, auth) client:emit("welcome", client.id); return true end },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

const SID_REPLY = (nsp) => new RegExp(`^40${nsp === "/" ? "" : `${nsp},`}\\{"sid":"[^"]+"\\}$`);

// joined: a websocket session that already joined "/" and /app.
async function joined() {
  const c = await wsOpen(srv.port);
  c.send("40");
  assert.match(await c.next(), SID_REPLY("/"));
  c.send("40/app,");
  assert.match(await c.next(), SID_REPLY("/app"));
  return c;
}

// mustClose: after sending `frames` on a joined session, the server closes the websocket.
async function mustClose(frames, { join = true } = {}) {
  const c = join ? await joined() : await wsOpen(srv.port);
  try {
    for (const f of frames) c.send(f);
    await c.waitClose(5000);
  } finally { c.close(); }
}

describe("Engine.IO over websocket", () => {
  it("open packet: exactly the five keys, upgrades []", async () => {
    const c = await wsOpen(srv.port);
    try {
      assert.deepEqual(Object.keys(c.handshake).sort(), ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
      assert.deepEqual(c.handshake.upgrades, []);
      assert.equal(c.handshake.pingInterval, 25000, "default pingIntervalMs");
      assert.equal(c.handshake.pingTimeout, 20000, "default pingTimeoutMs");
      assert.equal(c.handshake.maxPayload, MAX_PAYLOAD);
    } finally { c.close(); }
  });

  it("works when the client offers permessage-deflate", async () => {
    const c = new WsClient(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket`, { perMessageDeflate: true });
    try {
      await withTimeout(c.opened, 5000, "open");
      const open = await c.next();
      assert.equal(open[0], "0");
      c.send("40/app,");
      assert.match(await c.next(), SID_REPLY("/app"));
      c.send(`42/app,1["echo","${"z".repeat(2000)}"]`);
      assert.equal(await c.next(), `42/app,["echo","${"z".repeat(2000)}"]`);
    } finally { c.close(); }
  });

  // refused: the handshake fails (400), or the socket is dropped without an open packet
  async function assertRefused(query) {
    const c = new WsClient(`ws://127.0.0.1:${srv.port}/socket.io/?${query}`);
    try {
      let opened = true;
      try { await withTimeout(c.opened, 5000, "handshake"); } catch (e) {
        opened = false;
        assert.ok(e.status === undefined || e.status === 400, `refused with ${e.status}`);
      }
      if (opened) {
        await withTimeout(c.closed, 5000, "the socket to be dropped");
        assert.ok(!c.msgs.some((m) => typeof m === "string" && m.startsWith("0{")), `an open packet was sent: ${JSON.stringify(c.msgs)}`);
      }
    } finally { c.close(); }
  }

  it("an upgrade request with EIO=3 is refused", () => assertRefused("EIO=3&transport=websocket"));
  it("an upgrade request with an unknown sid is refused", () => assertRefused("EIO=4&transport=websocket&sid=nope-nope"));

  it("answers WebSocket control pings with pongs (Engine.IO pings are separate)", async () => {
    const c = await wsOpen(srv.port);
    try {
      const pong = new Promise((resolve) => c.ws.once("pong", (d) => resolve(d.toString())));
      c.ws.ping("hello");
      assert.equal(await withTimeout(pong, 5000, "pong"), "hello");
    } finally { c.close(); }
  });

  it("reassembles fragmented text messages", async () => {
    const c = await joined();
    try {
      c.ws.send('42/app,5["rpc",', { fin: false });
      c.ws.send("20,", { fin: false });
      c.ws.send("22]", { fin: true });
      assert.equal(await c.next(), "43/app,5[42]");
    } finally { c.close(); }
  });

  it("a client close frame is answered and the session ends", async () => {
    const c = await joined();
    c.ws.close(1000, "bye");
    const info = await c.waitClose(5000);
    assert.ok(info.code === 1000 || info.code === 1005, `close code ${info.code}`);
  });

  it("invalid Engine.IO packet (abc) closes the websocket", () => mustClose(["abc"], { join: false }));
  it("empty text frame closes the websocket", () => mustClose([""], { join: false }));
  it('a client ping ("2") is invalid in v4 and closes the websocket', () => mustClose(["2"], { join: false }));
  it("a message over maxPayload closes with 1009", async () => {
    const c = await wsOpen(srv.port);
    try {
      c.send(`4${"x".repeat(MAX_PAYLOAD + 1000)}`);
      const info = await c.waitClose(5000);
      assert.equal(info.code, 1009);
    } finally { c.close(); }
  });
  it("a binary message over maxPayload closes with 1009", async () => {
    const c = await wsOpen(srv.port);
    try {
      c.send(Buffer.alloc(MAX_PAYLOAD + 1000, 1));
      const info = await c.waitClose(5000);
      assert.equal(info.code, 1009);
    } finally { c.close(); }
  });
  it("a message just under maxPayload is accepted", async () => {
    const c = await joined();
    try {
      const pad = "y".repeat(MAX_PAYLOAD - 200);
      c.send(`42/app,8["echo","${pad}"]`);
      assert.equal(await c.next(), `42/app,["echo","${pad}"]`);
      assert.equal(await c.next(), `43/app,8["${pad}"]`);
    } finally { c.close(); }
  });
});

describe("Socket.IO packets, raw", () => {
  it('CONNECT "/" -> 40{"sid"} with exactly the key sid, distinct from the Engine.IO sid', async () => {
    const c = await wsOpen(srv.port);
    try {
      c.send("40");
      const m = await c.next();
      assert.match(m, SID_REPLY("/"));
      const body = JSON.parse(m.slice(2));
      assert.deepEqual(Object.keys(body), ["sid"]);
      assert.notEqual(body.sid, c.handshake.sid);
    } finally { c.close(); }
  });

  it("CONNECT with an auth payload reaches onConnect", async () => {
    const c = await wsOpen(srv.port);
    try {
      c.send('40/app,{"token":"raw-tok"}');
      const m = await c.next();
      assert.match(m, SID_REPLY("/app"));
      const id = JSON.parse(m.slice("40/app,".length)).sid;
      c.send('42/app,1["whoami"]');
      assert.equal(await c.next(), `43/app,1[${JSON.stringify(id)},"raw-tok"]`);
    } finally { c.close(); }
  });

  it('unknown namespace -> exactly 44/random,{"message":"Invalid namespace"}; the session stays up', async () => {
    const c = await wsOpen(srv.port);
    try {
      c.send("40/random,");
      assert.equal(await c.next(), '44/random,{"message":"Invalid namespace"}');
      c.send("40/random"); // namespace ending at the end of the string
      assert.equal(await c.next(), '44/random,{"message":"Invalid namespace"}');
      c.send("40/app,");
      assert.match(await c.next(), SID_REPLY("/app"));
    } finally { c.close(); }
  });

  it("event with ack id -> ACK with the same id (ids are opaque)", async () => {
    const c = await joined();
    try {
      c.send('42/app,17["rpc",1,2]');
      assert.equal(await c.next(), "43/app,17[3]");
      c.send('42/app,0["rpc",5,5]');
      assert.equal(await c.next(), "43/app,0[10]");
      c.send('42/app,4294967300["rpc",1,1]');
      assert.equal(await c.next(), "43/app,4294967300[2]");
    } finally { c.close(); }
  });

  it("an event emitted in onConnect follows the CONNECT reply, in order", async () => {
    const c = await wsOpen(srv.port);
    try {
      c.send("40/hello,");
      const reply = await c.next();
      assert.match(reply, SID_REPLY("/hello"), "the CONNECT reply comes first");
      const id = JSON.parse(reply.slice("40/hello,".length)).sid;
      assert.equal(await c.next(), `42/hello,["welcome",${JSON.stringify(id)}]`);
    } finally { c.close(); }
  });

  it("an ack with no arguments is 43/app,<id>[]", async () => {
    const c = await joined();
    try {
      c.send('42/app,7["noargs"]');
      assert.equal(await c.next(), "43/app,7[]");
    } finally { c.close(); }
  });

  it("DISCONNECT with the namespace ending at the end of the packet (41/app) leaves it", async () => {
    const c = await joined();
    try {
      const barrier = await withHello(c);
      c.send("41/app");
      await barrier();
      c.send("40/app,"); // a second CONNECT while still joined would close the session
      assert.match(await c.next(), SID_REPLY("/app"));
      c.send('42/app,2["ping"]');
      assert.equal(await c.next(), '43/app,2["pong"]');
    } finally { c.close(); }
  });

  it("a Lua ack called twice answers once", async () => {
    const c = await joined();
    try {
      c.send('42/app,5["double"]');
      c.send('42/app,6["ping"]');
      assert.equal(await c.next(), "43/app,5[1]");
      assert.equal(await c.next(), '43/app,6["pong"]');
    } finally { c.close(); }
  });

  it("an ACK with an unknown id is ignored", async () => {
    const c = await joined();
    try {
      c.send("43/app,999[1]");
      c.send("43999[]");
      c.send('42/app,1["ping"]');
      assert.equal(await c.next(), '43/app,1["pong"]');
    } finally { c.close(); }
  });

  it("BINARY_EVENT by hand: header + raw binary frame in, the same out; BINARY_ACK", async () => {
    const c = await joined();
    try {
      c.send('451-/app,["echo",{"_placeholder":true,"num":0}]');
      c.send(Buffer.from([1, 2, 3]));
      assert.equal(await c.next(), '451-/app,["echo",{"_placeholder":true,"num":0}]');
      const b = await c.next();
      assert.ok(Buffer.isBuffer(b), `expected a binary frame, got ${JSON.stringify(b)}`);
      assert.deepEqual([...b], [1, 2, 3]);

      c.send('452-/app,789["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      c.send(Buffer.from([9]));
      c.send(Buffer.from([8, 7]));
      assert.equal(await c.next(), '452-/app,["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual([...(await c.next())], [9]);
      assert.deepEqual([...(await c.next())], [8, 7]);
      assert.equal(await c.next(), '462-/app,789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]');
      assert.deepEqual([...(await c.next())], [9]);
      assert.deepEqual([...(await c.next())], [8, 7]);
    } finally { c.close(); }
  });

  it("a text frame starting with b is accepted as a base64 binary attachment", async () => {
    const c = await joined();
    try {
      c.send('451-/app,["echo",{"_placeholder":true,"num":0}]');
      c.send("bAQID");
      assert.equal(await c.next(), '451-/app,["echo",{"_placeholder":true,"num":0}]');
      assert.deepEqual([...(await c.next())], [1, 2, 3]);
    } finally { c.close(); }
  });

  // A DISCONNECT has no reply; a ping on another joined namespace (/hello) is the barrier that
  // shows it was processed (packets of one session are handled in order).
  async function withHello(c) {
    c.send("40/hello,");
    // the CONNECT reply and the welcome event, in either order (the order has its own test)
    const two = [await c.next(), await c.next()].sort();
    assert.match(two[0], SID_REPLY("/hello"));
    assert.match(two[1], /^42\/hello,\["welcome",/);
    let n = 100;
    return async () => {
      n++;
      c.send(`42/hello,${n}["ping"]`);
      assert.equal(await c.next(), `43/hello,${n}["pong"]`);
    };
  }

  it('DISCONNECT (41) leaves the namespace; the session stays and "/" can be joined again', async () => {
    const c = await joined();
    try {
      const barrier = await withHello(c);
      c.send("41/app,");
      await barrier();
      c.send("41");
      await barrier();
      c.send("40");
      assert.match(await c.next(), SID_REPLY("/"));
      c.send("40/app,");
      assert.match(await c.next(), SID_REPLY("/app"));
    } finally { c.close(); }
  });

  it("4abc (unknown Socket.IO type) closes the connection", () => mustClose(["4abc"]));
  it("42{} (payload not an array) closes the connection", () => mustClose(["42{}"]));
  it('42abc["x"] (garbage after the type) closes the connection', () => mustClose(['42abc["x"]']));
  it("42[] (empty event array) closes the connection", () => mustClose(["42[]"]));
  it("42[{}] (event name neither string nor number) closes the connection", () => mustClose(["42[{}]"]));
  it('42["connect"] (reserved event name) closes the connection', () => mustClose(['42["connect"]']));
  it("4 with invalid JSON (42[\"x\",) closes the connection", () => mustClose(['42["x",']));
  it("CONNECT with a non-object payload (40[1]) closes the connection", () => mustClose(["40[1]"], { join: false }));
  it("an event for a namespace not joined closes the connection", () => mustClose(['42/app,["ping"]'], { join: false }));
  it("a second CONNECT for a joined namespace closes the connection", () => mustClose(["40/app,"]));
  it("text while binary attachments are pending closes the connection", () =>
    mustClose(['451-/app,["echo",{"_placeholder":true,"num":0}]', '42/app,["ping"]']));
  it("a binary frame when no attachment is expected closes the connection", () => mustClose([Buffer.from([1, 2])]));
  it("a placeholder num out of range closes the connection", () =>
    mustClose(['451-/app,["echo",{"_placeholder":true,"num":3}]', Buffer.from([1])]));

  it("the server is still healthy after all of the above", async () => {
    const c = await joined();
    try {
      c.send('42/app,1["rpc",2,3]');
      assert.equal(await c.next(), "43/app,1[5]");
    } finally { c.close(); }
  });
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
