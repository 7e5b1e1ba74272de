// engineio-upgrade-edges.test.mjs - what the official engine.io-protocol test suite checks
// after an upgrade (issue 13, point 5), on the raw Engine.IO endpoint with an echo:
// a polling request with the sid of an upgraded session gets 400 and the WebSocket session
// goes on; a second WebSocket with the same sid is accepted (101) and then closed, without
// disturbing the first (after an upgrade, and on a session that started on WebSocket).
import { it, before, after } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanExit, WsClient, withTimeout } from "./helpers.mjs";

const CONFIG = `
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      engineIo = { path = "/engine.io/", onMessage = function(conn, data) conn:send(data) end },
      namespaces = { { path = "/feed", topics = { "prices" } } },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

const url = (q) => `http://127.0.0.1:${srv.port}/engine.io/?EIO=4&${q}`;
const wsUrl = (q) => `ws://127.0.0.1:${srv.port}/engine.io/?EIO=4&${q}`;

// upgraded: a polling session upgraded to WebSocket (probe, then "5"); returns {sid, ws}.
async function upgraded() {
  const r = await fetch(url("transport=polling"), { signal: AbortSignal.timeout(5000) });
  const { sid } = JSON.parse((await r.text()).slice(1));
  const ws = new WsClient(wsUrl(`transport=websocket&sid=${sid}`));
  await withTimeout(ws.opened, 5000, "the upgrade WebSocket");
  ws.send("2probe");
  assert.equal(await ws.next(), "3probe");
  ws.send("5");
  return { sid, ws };
}

async function echoes(ws, text) {
  ws.send(`4${text}`);
  assert.equal(await ws.next(), `4${text}`, "the WebSocket session still works");
}

it("a polling GET or POST with the sid of an upgraded session gets 400; the WebSocket goes on", async () => {
  const { sid, ws } = await upgraded();
  try {
    const g = await fetch(url(`transport=polling&sid=${sid}`), { signal: AbortSignal.timeout(5000) });
    assert.equal(g.status, 400);
    await echoes(ws, "after GET");
    const p = await fetch(url(`transport=polling&sid=${sid}`), {
      method: "POST", body: "4late", headers: { "content-type": "text/plain;charset=UTF-8" }, signal: AbortSignal.timeout(5000),
    });
    assert.equal(p.status, 400);
    await echoes(ws, "after POST");
    assert.equal(ws.closeInfo, null);
  } finally { ws.close(); }
});

it("a second WebSocket with the same sid after the upgrade is accepted, then closed; the first goes on", async () => {
  const { sid, ws } = await upgraded();
  try {
    await echoes(ws, "upgraded");
    const ws2 = new WsClient(wsUrl(`transport=websocket&sid=${sid}`));
    await withTimeout(ws2.opened, 5000, "the second WebSocket to be accepted (101)");
    const closed = await withTimeout(ws2.closed, 5000, "the second WebSocket to be closed");
    assert.ok(closed.code >= 1000, JSON.stringify(closed));
    await echoes(ws, "hello");
    assert.equal(ws.closeInfo, null);
  } finally { ws.close(); }
});

it("the same for a session that started on WebSocket", async () => {
  const ws = new WsClient(wsUrl("transport=websocket"));
  try {
    await withTimeout(ws.opened, 5000, "open");
    const { sid } = JSON.parse((await ws.next()).slice(1));
    const ws2 = new WsClient(wsUrl(`transport=websocket&sid=${sid}`));
    await withTimeout(ws2.opened, 5000, "the second WebSocket to be accepted (101)");
    await withTimeout(ws2.closed, 5000, "the second WebSocket to be closed");
    await echoes(ws, "still here");
    const g = await fetch(url(`transport=polling&sid=${sid}`), { signal: AbortSignal.timeout(5000) });
    assert.equal(g.status, 400);
    await echoes(ws, "and here");
  } finally { ws.close(); }
});

it("shuts down cleanly", async () => { assertCleanExit(await srv.stop()); });
