// engineio-polling.test.mjs - Engine.IO v4 over HTTP long-polling, by hand with fetch
// (PROTOCOL.md §2.1-2.5, §2.7): handshake fields, error codes, close, concurrent GETs, invalid
// packets, size limit, binary as b<base64>, batching, and the polling -> websocket upgrade.
//
// A few tests must know the server holds a GET before they act (close, concurrent GET, probe);
// HTTP gives no signal for that, so they wait HOLD_MS after sending it. Nothing else sleeps.
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, LUA_APP, RS, eioGet, eioPost, handshake, pollUntil, WsClient,
  withTimeout, sleep, client, connected, closeAll, MODES,
} from "./helpers.mjs";

const HOLD_MS = 250;
const PING_INTERVAL = 20000, PING_TIMEOUT = 15000, MAX_PAYLOAD = 100000;

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      pingIntervalMs = ${PING_INTERVAL}, pingTimeoutMs = ${PING_TIMEOUT}, maxPayload = ${MAX_PAYLOAD},
      engineIoTransport = "WEBSOCKET_OR_POLLING",
      namespaces = {
        { path = "/app", topics = { "t" }, onConnect = app_connect, onEvent = app_event },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

const q = (sid) => `EIO=4&transport=polling&sid=${encodeURIComponent(sid)}`;

function errorBody(r) {
  let j;
  try { j = JSON.parse(r.body); } catch { assert.fail(`error body is not JSON: ${JSON.stringify(r.body)}`); }
  assert.equal(typeof j.code, "number", `error body ${r.body}`);
  assert.equal(typeof j.message, "string", `error body ${r.body}`);
  return j;
}

async function assertSidGone(sid) {
  const r = await eioGet(srv.port, q(sid), { ms: 3000 });
  assert.equal(r.status, 400, `sid ${sid} should be unknown, got ${r.status} ${JSON.stringify(r.body)}`);
}

it("handshake: 200 text/plain, open packet with exactly sid/upgrades/pingInterval/pingTimeout/maxPayload", async () => {
  const r = await eioGet(srv.port, "EIO=4&transport=polling");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") || "", /^text\/plain/);
  assert.equal(r.body[0], "0", r.body);
  const open = JSON.parse(r.body.slice(1));
  assert.deepEqual(Object.keys(open).sort(), ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
  assert.equal(typeof open.sid, "string");
  assert.ok(open.sid.length > 0);
  assert.deepEqual(open.upgrades, ["websocket"]);
  assert.equal(open.pingInterval, PING_INTERVAL);
  assert.equal(open.pingTimeout, PING_TIMEOUT);
  assert.equal(open.maxPayload, MAX_PAYLOAD);
  const other = await handshake(srv.port);
  assert.notEqual(other.sid, open.sid, "every session gets its own sid");
});

it("handshake ignores extra query parameters (t=, b64=, user query)", async () => {
  const r = await eioGet(srv.port, "EIO=4&transport=polling&t=Nabc123&b64=1&room=x");
  assert.equal(r.status, 200);
  assert.equal(r.body[0], "0");
});

it('EIO=3 and EIO=abc -> 400 {"code":5,...}', async () => {
  for (const v of ["3", "abc"]) {
    const r = await eioGet(srv.port, `EIO=${v}&transport=polling`);
    assert.equal(r.status, 400, `EIO=${v}`);
    assert.equal(errorBody(r).code, 5, `EIO=${v}: ${r.body}`);
  }
});

it("missing EIO -> 400", async () => {
  const r = await eioGet(srv.port, "transport=polling");
  assert.equal(r.status, 400);
  errorBody(r);
});

it('missing or unknown transport -> 400 {"code":0,...}', async () => {
  for (const query of ["EIO=4", "EIO=4&transport=foo", "EIO=4&transport="]) {
    const r = await eioGet(srv.port, query);
    assert.equal(r.status, 400, query);
    assert.equal(errorBody(r).code, 0, `${query}: ${r.body}`);
  }
});

it('unknown sid on GET and POST -> 400 {"code":1,...}', async () => {
  const g = await eioGet(srv.port, q("no-such-sid-123456"));
  assert.equal(g.status, 400);
  assert.equal(errorBody(g).code, 1, g.body);
  const p = await eioPost(srv.port, q("no-such-sid-123456"), "40");
  assert.equal(p.status, 400);
  assert.equal(errorBody(p).code, 1, p.body);
});

it('POST handshake (no sid) -> 400 {"code":2,...}', async () => {
  const r = await eioPost(srv.port, "EIO=4&transport=polling", "40");
  assert.equal(r.status, 400);
  assert.equal(errorBody(r).code, 2, r.body);
});

it("transport=websocket without an Upgrade header -> 400", async () => {
  const r = await eioGet(srv.port, "EIO=4&transport=websocket");
  assert.equal(r.status, 400);
});

it("CONNECT, event with ack id, and batched packets in one POST (\\x1e-separated)", async () => {
  const { sid } = await handshake(srv.port);
  const p = await eioPost(srv.port, q(sid), "40/app,");
  assert.equal(p.status, 200);
  assert.equal(p.body, "ok");
  const seen = await pollUntil(srv.port, sid, (s) => s.some((x) => x.startsWith("40/app,")));
  const conn = seen.find((x) => x.startsWith("40/app,"));
  assert.deepEqual(Object.keys(JSON.parse(conn.slice("40/app,".length))), ["sid"]);
  const p2 = await eioPost(srv.port, q(sid), `42/app,1["rpc",1,2]${RS}42/app,2["rpc",40,2]${RS}42/app,3["rpc",0,0]`);
  assert.equal(p2.body, "ok");
  const acks = (await pollUntil(srv.port, sid, (s) => s.includes("43/app,3[0]"))).filter((x) => x.startsWith("43/"));
  assert.deepEqual(acks, ["43/app,1[3]", "43/app,2[42]", "43/app,3[0]"]);
  await eioPost(srv.port, q(sid), "1");
});

it("GET responses are text/plain; POST answers 200 ok", async () => {
  const { sid } = await handshake(srv.port);
  const p = await eioPost(srv.port, q(sid), "40");
  assert.equal(p.status, 200);
  assert.equal(p.body, "ok");
  const g = await eioGet(srv.port, q(sid));
  assert.equal(g.status, 200);
  assert.match(g.headers.get("content-type") || "", /^text\/plain/);
  assert.match(g.body, /^40\{"sid":"[^"]+"\}/);
  await eioPost(srv.port, q(sid), "1");
});

it('POST "1" closes the session: a pending GET gets exactly "6", then the sid is unknown', async () => {
  const { sid } = await handshake(srv.port);
  const held = eioGet(srv.port, q(sid), { ms: 5000 });
  await sleep(HOLD_MS);
  const p = await eioPost(srv.port, q(sid), "1");
  assert.equal(p.status, 200);
  assert.equal(p.body, "ok");
  const g = await held;
  assert.equal(g.status, 200);
  assert.equal(g.body, "6");
  await assertSidGone(sid);
});

it('a concurrent second GET fails, the pending one gets exactly "1", then the sid is unknown', async () => {
  const { sid } = await handshake(srv.port);
  const first = eioGet(srv.port, q(sid), { ms: 5000 });
  await sleep(HOLD_MS);
  const second = await eioGet(srv.port, q(sid), { ms: 5000 });
  assert.ok(second.status === 400 || second.status === 500, `second GET: ${second.status} ${second.body}`);
  const g = await first;
  assert.equal(g.status, 200);
  assert.equal(g.body, "1");
  await assertSidGone(sid);
});

it("an invalid packet in a POST (abc) kills the session", async () => {
  const { sid } = await handshake(srv.port);
  await eioPost(srv.port, q(sid), "abc"); // any status
  await assertSidGone(sid);
});

it('a client ping ("2") over polling is invalid and kills the session', async () => {
  const { sid } = await handshake(srv.port);
  await eioPost(srv.port, q(sid), "2");
  await assertSidGone(sid);
});

it("an invalid Socket.IO packet over polling (42{}) closes the session", async () => {
  const { sid } = await handshake(srv.port);
  await eioPost(srv.port, q(sid), "40");
  await pollUntil(srv.port, sid, (s) => s.some((x) => x.startsWith("40{")));
  await eioPost(srv.port, q(sid), "42{}");
  // the server closes the session: a GET gets "1" (close) or 400
  const deadline = Date.now() + 3000;
  for (;;) {
    const g = await eioGet(srv.port, q(sid), { ms: 3000 });
    if (g.status === 400) break;
    assert.ok(Date.now() < deadline, `session still open: ${g.status} ${JSON.stringify(g.body)}`);
    assert.ok(!g.body.split(RS).includes("2"), `got a ping instead of a close: ${g.body}`);
  }
});

it("a POST over maxPayload -> 413 and the session is closed", async () => {
  const { sid } = await handshake(srv.port);
  const r = await eioPost(srv.port, q(sid), `4${"x".repeat(MAX_PAYLOAD + 1000)}`);
  assert.equal(r.status, 413);
  await assertSidGone(sid);
});

it("a POST with Content-Type application/octet-stream -> 400", async () => {
  const { sid } = await handshake(srv.port);
  const r = await eioPost(srv.port, q(sid), "40", { headers: { "content-type": "application/octet-stream" } });
  assert.equal(r.status, 400);
});

it("binary over polling: b<base64> records in and out, BINARY_EVENT and BINARY_ACK", async () => {
  const { sid } = await handshake(srv.port);
  await eioPost(srv.port, q(sid), "40/app,");
  await pollUntil(srv.port, sid, (s) => s.some((x) => x.startsWith("40/app,{")));
  const hdr = '451-/app,["echo",{"_placeholder":true,"num":0}]';
  const p = await eioPost(srv.port, q(sid), `${hdr}${RS}bAQIDBA==`);
  assert.equal(p.status, 200);
  let seen = await pollUntil(srv.port, sid, (s) => s.includes(hdr) && s.indexOf(hdr) + 1 < s.length);
  let i = seen.indexOf(hdr);
  assert.equal(seen[i + 1], "bAQIDBA==", `attachment must follow its header: ${JSON.stringify(seen)}`);

  const hdrAck = '451-/app,9["echo",{"_placeholder":true,"num":0}]';
  await eioPost(srv.port, q(sid), `${hdrAck}${RS}b/wD+AQ==`);
  const ackHdr = '461-/app,9[{"_placeholder":true,"num":0}]';
  seen = await pollUntil(srv.port, sid, (s) => s.includes(ackHdr) && s.indexOf(ackHdr) + 1 < s.length);
  i = seen.indexOf(ackHdr);
  assert.equal(seen[i + 1], "b/wD+AQ==", JSON.stringify(seen));
  await eioPost(srv.port, q(sid), "1");
});

it("socket.io-client on polling batches big emits under the advertised maxPayload; all are accepted", async () => {
  const s = await connected(client(`${srv.url}/app`, MODES["polling-only"]));
  try {
    const big = "q".repeat(Math.floor(MAX_PAYLOAD * 0.4));
    const acks = await Promise.all(Array.from({ length: 6 }, (_, i) => s.timeout(8000).emitWithAck("echo", i, big)));
    assert.deepEqual(acks, [0, 1, 2, 3, 4, 5]);
    assert.equal(s.connected, true);
  } finally { closeAll(s); }
});

it("upgrade by hand: 2probe/3probe, held GET answered 6, 5, then polling is refused", async () => {
  const { sid } = await handshake(srv.port);
  const heldBefore = eioGet(srv.port, q(sid), { ms: 5000 });
  await sleep(HOLD_MS);
  const ws = new WsClient(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(sid)}`);
  try {
    await withTimeout(ws.opened, 5000, "websocket open");
    ws.send("2probe");
    assert.equal(await ws.next(5000, { skipPings: false }), "3probe", "3probe must be the first frame on the probe WS");
    const g1 = await heldBefore;
    assert.equal(g1.status, 200);
    assert.equal(g1.body, "6", "a GET held during the probe is completed with a noop");
    const g2 = await eioGet(srv.port, q(sid), { ms: 5000 });
    assert.equal(g2.status, 200);
    assert.equal(g2.body, "6", "a GET issued after 3probe is completed with a noop");
    ws.send("5");
    ws.send("40/app,");
    const m = await ws.next();
    assert.match(m, /^40\/app,\{"sid":"[^"]+"\}$/);
    ws.send('42/app,3["rpc",2,2]');
    assert.equal(await ws.next(), "43/app,3[4]");
    const g3 = await eioGet(srv.port, q(sid), { ms: 3000 });
    assert.equal(g3.status, 400, "polling with an upgraded sid must be refused");
    assert.equal(ws.closeInfo, null, "the upgraded websocket stays open");
  } finally { ws.close(); }
});

it("data queued before the upgrade is delivered after it, once", async () => {
  const { sid } = await handshake(srv.port);
  await eioPost(srv.port, q(sid), "40/app,");
  await pollUntil(srv.port, sid, (s) => s.some((x) => x.startsWith("40/app,{")));
  const ws = new WsClient(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(sid)}`);
  try {
    await withTimeout(ws.opened, 5000, "websocket open");
    ws.send("2probe");
    assert.equal(await ws.next(5000, { skipPings: false }), "3probe");
    // queued while probing: may go out on polling until "5", else on the websocket after it
    await eioPost(srv.port, q(sid), '42/app,["push",3]');
    const got = [];
    const g = await eioGet(srv.port, q(sid), { ms: 5000 });
    assert.equal(g.status, 200);
    for (const x of g.body.split(RS)) if (x !== "6") got.push(x);
    ws.send("5");
    while (got.length < 3) got.push(await ws.next());
    assert.deepEqual(got, ['42/app,["pushed",1]', '42/app,["pushed",2]', '42/app,["pushed",3]']);
  } finally { ws.close(); }
});

it("a second websocket for an already upgraded sid is closed; the first one keeps working", async () => {
  const { sid } = await handshake(srv.port);
  const url = `ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(sid)}`;
  const ws = new WsClient(url);
  let ws2;
  try {
    await withTimeout(ws.opened, 5000, "websocket open");
    ws.send("2probe");
    assert.equal(await ws.next(5000, { skipPings: false }), "3probe");
    ws.send("5");
    ws2 = new WsClient(url);
    let refused = false;
    try { await withTimeout(ws2.opened, 5000, "second websocket open"); } catch { refused = true; }
    if (!refused) await ws2.waitClose(5000); // accepted, then closed: also fine
    ws.send("40/app,");
    assert.match(await ws.next(), /^40\/app,\{"sid":"[^"]+"\}$/);
  } finally { ws.close(); ws2?.close(); }
});

it("anything but 2probe/5 on a probing websocket closes that websocket only", async () => {
  const { sid } = await handshake(srv.port);
  const ws = new WsClient(`ws://127.0.0.1:${srv.port}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(sid)}`);
  try {
    await withTimeout(ws.opened, 5000, "websocket open");
    ws.send('42["x"]');
    await ws.waitClose(5000);
    // the polling session survives
    await eioPost(srv.port, q(sid), "40/app,");
    const seen = await pollUntil(srv.port, sid, (s) => s.some((x) => x.startsWith("40/app,{")));
    assert.ok(seen.length > 0);
  } finally { ws.close(); }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
