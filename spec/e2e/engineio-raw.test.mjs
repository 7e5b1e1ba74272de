// engineio-raw.test.mjs - the optional raw Engine.IO endpoint (server key engineIo, no
// Socket.IO layer): a Lua onMessage echo reached over polling and websocket, text and binary,
// next to the regular /socket.io/ endpoint on the same port.
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanExit, WsClient, withTimeout, RS, client, connected, closeAll, MODES } from "./helpers.mjs";

const CONFIG = `
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      engineIo = {
        path = "/engine.io/",
        onMessage = function(conn, data) conn:send(data) end,
      },
      namespaces = { { path = "/feed", topics = { "prices" } } },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

const url = (q) => `http://127.0.0.1:${srv.port}/engine.io/?EIO=4&${q}`;
const get = async (q) => {
  const r = await fetch(url(q), { signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
};
const post = async (q, body) => {
  const r = await fetch(url(q), { method: "POST", body, headers: { "content-type": "text/plain;charset=UTF-8" }, signal: AbortSignal.timeout(5000) });
  return { status: r.status, body: await r.text() };
};

it("polling: handshake on /engine.io/, text and binary echo", async () => {
  const h = await get("transport=polling");
  assert.equal(h.status, 200);
  assert.equal(h.body[0], "0", h.body);
  const { sid, upgrades } = JSON.parse(h.body.slice(1));
  assert.deepEqual(upgrades, ["websocket"]);
  const q = `transport=polling&sid=${encodeURIComponent(sid)}`;
  assert.equal((await post(q, `4hello${RS}bAQIDBA==${RS}4wörld`)).body, "ok");
  const seen = [];
  while (seen.length < 3) {
    const g = await get(q);
    assert.equal(g.status, 200);
    for (const p of g.body.split(RS)) if (p !== "2") seen.push(p);
  }
  assert.deepEqual(seen, ["4hello", "bAQIDBA==", "4wörld"]);
  await post(q, "1");
});

it("websocket: text and binary echo", async () => {
  const c = new WsClient(`ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=websocket`);
  try {
    await withTimeout(c.opened, 5000, "open");
    const open = await c.next();
    assert.equal(open[0], "0");
    assert.deepEqual(JSON.parse(open.slice(1)).upgrades, []);
    c.send("4hi there");
    assert.equal(await c.next(), "4hi there");
    c.send(Buffer.from([0, 255, 1]));
    const b = await c.next();
    assert.ok(Buffer.isBuffer(b), JSON.stringify(b));
    assert.deepEqual([...b], [0, 255, 1]);
  } finally { c.close(); }
});

it("/socket.io/ keeps working next to it", async () => {
  const s = await connected(client(`${srv.url}/feed`, MODES.websocket));
  closeAll(s);
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
