// heartbeat.test.mjs - Engine.IO v4 heartbeat and connect timeout (PROTOCOL.md §2.4, §3.2)
// with pingIntervalMs 300 / pingTimeoutMs 200 / connectTimeoutMs 1000, as in the reference
// suites: the server pings, the client pongs; no pong -> the session is closed; a session that
// joins no namespace is closed after connectTimeoutMs.
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, LUA_APP, eioGet, eioPost, handshake, wsOpen, client, connected,
  closeAll, MODES, withTimeout,
} from "./helpers.mjs";

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      pingIntervalMs = 300, pingTimeoutMs = 200, connectTimeoutMs = 1000,
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

const q = (sid) => `EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;

it("handshake advertises pingInterval 300 / pingTimeout 200", async () => {
  const open = await handshake(srv.port);
  assert.equal(open.pingInterval, 300);
  assert.equal(open.pingTimeout, 200);
});

it('polling: the first GET returns exactly "2"; three ping/pong rounds work', async () => {
  const { sid } = await handshake(srv.port);
  await eioPost(srv.port, q(sid), "40"); // join "/" so the connect timeout does not interfere
  const first = await eioGet(srv.port, q(sid));
  assert.equal(first.status, 200);
  assert.match(first.body, /^40\{"sid":"[^"]+"\}/);
  if (first.body.split("\x1e").includes("2")) await eioPost(srv.port, q(sid), "3"); // a slow first GET
  for (let round = 0; round < 3; round++) {
    const g = await eioGet(srv.port, q(sid), { ms: 3000 });
    assert.equal(g.status, 200, `round ${round}`);
    assert.equal(g.body, "2", `round ${round}`);
    const p = await eioPost(srv.port, q(sid), "3");
    assert.equal(p.status, 200);
  }
  await eioPost(srv.port, q(sid), "1");
});

it('polling: the first GET after the handshake (no other traffic) returns exactly "2"', async () => {
  const { sid } = await handshake(srv.port);
  const g = await eioGet(srv.port, q(sid), { ms: 3000 });
  assert.equal(g.status, 200);
  assert.equal(g.body, "2");
  await eioPost(srv.port, q(sid), "1");
});

it("polling: no pong -> the session is closed (sid unknown)", async () => {
  const { sid } = await handshake(srv.port);
  await eioPost(srv.port, q(sid), "40");
  const deadline = Date.now() + 3000;
  let last;
  for (;;) {
    last = await eioGet(srv.port, q(sid), { ms: 3000 });
    if (last.status === 400) break;
    assert.ok(Date.now() < deadline, `session still alive 3 s after its pings went unanswered: ${last.status} ${JSON.stringify(last.body)}`);
  }
  assert.equal(last.status, 400);
});

it("websocket: pings arrive as text frames \"2\"; answering keeps the session alive", async () => {
  const c = await wsOpen(srv.port);
  try {
    c.send("40");
    assert.match(await c.next(), /^40\{"sid":"[^"]+"\}$/);
    for (let round = 0; round < 4; round++) {
      assert.equal(await c.next(2000, { skipPings: false }), "2", `round ${round}`);
      c.send("3");
    }
    c.send('40/app,');
    assert.match(await c.next(2000), /^40\/app,\{"sid":"[^"]+"\}$/);
  } finally { c.close(); }
});

it("websocket: no pong -> the server closes the websocket", async () => {
  const c = await wsOpen(srv.port);
  try {
    c.send("40");
    assert.match(await c.next(), /^40\{"sid":"[^"]+"\}$/);
    assert.equal(await c.next(2000, { skipPings: false }), "2");
    await c.waitClose(3000);
  } finally { c.close(); }
});

it('after DISCONNECT (41) the session stays: the next frame is the regular ping "2"', async () => {
  const c = await wsOpen(srv.port);
  try {
    c.send("40");
    assert.match(await c.next(), /^40\{"sid":"[^"]+"\}$/);
    c.send("41");
    assert.equal(await c.next(2000, { skipPings: false }), "2");
    c.send("3");
  } finally { c.close(); }
});

it("a session that joins no namespace is closed after connectTimeoutMs", async () => {
  const c = await wsOpen(srv.port);
  try {
    // keep answering pings so only the connect timeout can close it
    const closed = c.waitClose(4000);
    const pump = (async () => { for (;;) await c.next(4000); })().catch(() => {});
    await closed;
    await pump;
  } finally { c.close(); }
});

for (const [mode, opts] of Object.entries(MODES)) {
  it(`socket.io-client (${mode}) stays connected across several heartbeats`, async () => {
    const s = client(`${srv.url}/app`, opts);
    try {
      await connected(s);
      let pings = 0;
      await withTimeout(new Promise((resolve) => {
        s.io.engine.on("ping", () => { if (++pings === 5) resolve(); });
      }), 5000, "5 pings");
      assert.equal(s.connected, true);
      assert.equal(await s.timeout(2000).emitWithAck("rpc", 1, 2), 3);
    } finally { closeAll(s); }
  });
}

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
