// http-api.test.mjs - HTTP on the socket.io port (DESIGN.md §3.4): POST /api/publish (one or
// many, publishTo, every error as JSON {"error":{"code","message"}}), GET /metrics with the
// StreamFenceJs metric names (STREAMFENCE.md §1.12), GET /healthz, 404 for anything else, and
// HTTP/1.1 keep-alive.
import { it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import {
  startServer, assertCleanExit, LUA_APP, api, publish, client, connected, closeAll, MODES, Inbox,
  rawHttp, statusOf,
} from "./helpers.mjs";

const MAX_PAYLOAD = 100000;

const CONFIG = `
${LUA_APP}
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0, maxPayload = ${MAX_PAYLOAD},
      namespaces = {
        { path = "/feed", topics = { "prices", "news" }, onEvent = app_event },
        { path = "/tiny", topics = { "t" }, maxQueuedBytesPerClient = 10, onEvent = app_event },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

function assertJsonError(r, status, what) {
  assert.equal(r.status, status, `${what}: status ${r.status}, body ${r.text}`);
  assert.match(r.headers.get("content-type") || "", /application\/json/, `${what}: content-type`);
  assert.ok(r.body && typeof r.body === "object" && r.body.error, `${what}: body ${r.text}`);
  assert.ok(["string", "number"].includes(typeof r.body.error.code), `${what}: error.code in ${r.text}`);
  assert.equal(typeof r.body.error.message, "string", `${what}: error.message in ${r.text}`);
  assert.ok(r.body.error.message.length > 0);
}

async function metrics() {
  const r = await fetch(`${srv.url}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type") || "", /^text\/plain/);
  return r.text();
}

// metricValue: the value of one sample line `name{labels} value` (labels exactly as given,
// in any order), or null.
function metricValue(text, name, labels) {
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = {};
    for (const p of (m[2] || "{}").slice(1, -1).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[p[1]] = p[2];
    if (Object.keys(labels).every((k) => got[k] === labels[k]) && Object.keys(got).length === Object.keys(labels).length) {
      return Number(m[3]);
    }
  }
  return null;
}

it('publishes one message -> 200 {"messageIds":[id]} (application/json)', async () => {
  const r = await api(srv.port, { namespace: "/feed", topic: "prices", payload: { px: 1 } });
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers.get("content-type") || "", /application\/json/);
  assert.deepEqual(Object.keys(r.body), ["messageIds"]);
  assert.equal(r.body.messageIds.length, 1);
  assert.equal(typeof r.body.messageIds[0], "string");
});

it("publishes an array -> one id per message, all distinct, and delivers them in order", async () => {
  const s = await connected(client(`${srv.url}/feed`, MODES.websocket));
  try {
    const news = new Inbox(s, "news");
    s.emit("subscribe", { topic: "news" });
    assert.equal(await s.timeout(5000).emitWithAck("ping"), "pong");
    const r = await api(srv.port, [
      { namespace: "/feed", topic: "news", payload: "a" },
      { namespace: "/feed", topic: "news", payload: { b: 2 } },
      { namespace: "/feed", topic: "news", payload: [3] },
    ]);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.messageIds.length, 3);
    assert.equal(new Set(r.body.messageIds).size, 3);
    assert.deepEqual(await news.next(), ["a"]);
    assert.deepEqual(await news.next(), [{ b: 2 }]);
    assert.deepEqual(await news.next(), [[3]]);
  } finally { closeAll(s); }
});

it("publish to a client id that does not exist is not an error", async () => {
  const r = await api(srv.port, { namespace: "/feed", topic: "prices", payload: 1, to: "no-such-client" });
  assert.equal(r.status, 200, r.text);
});

it("invalid JSON -> 400 JSON error", async () => {
  for (const body of ["{", "not json", '{"namespace":"/feed",', ""]) {
    assertJsonError(await api(srv.port, body, { raw: true }), 400, `body ${JSON.stringify(body)}`);
  }
});

it("malformed fields -> 400 JSON error", async () => {
  const cases = [
    5, "str", null,
    { topic: "prices", payload: 1 },
    { namespace: "/feed", payload: 1 },
    { namespace: 5, topic: "prices", payload: 1 },
    { namespace: "/feed", topic: ["prices"], payload: 1 },
    { namespace: "/feed", topic: "prices", payload: 1, to: 7 },
    [{ namespace: "/feed", topic: "prices", payload: 1 }, 5],
  ];
  for (const c of cases) assertJsonError(await api(srv.port, c), 400, `body ${JSON.stringify(c)}`);
});

it("unknown namespace or topic -> 404 JSON error", async () => {
  assertJsonError(await api(srv.port, { namespace: "/nope", topic: "prices", payload: 1 }), 404, "unknown namespace");
  assertJsonError(await api(srv.port, { namespace: "/feed", topic: "nope", payload: 1 }), 404, "unknown topic");
  assertJsonError(await api(srv.port, { namespace: "/tiny", topic: "prices", payload: 1 }), 404, "topic of another namespace");
});

it("a payload larger than maxPayload -> 413 JSON error", async () => {
  const r = await api(srv.port, { namespace: "/feed", topic: "prices", payload: "x".repeat(MAX_PAYLOAD * 2) });
  assertJsonError(r, 413, "oversized payload");
});

it("a request body of 20 MiB -> 413 (or the connection is closed), and the server survives", async () => {
  let r;
  try {
    r = await api(srv.port, { namespace: "/feed", topic: "prices", payload: "x".repeat(20 * 1024 * 1024) });
  } catch (e) {
    r = { status: "closed" };
  }
  assert.ok(r.status === 413 || r.status === "closed", `status ${r.status} ${r.text?.slice(0, 200)}`);
  if (r.status === 413) assertJsonError(r, 413, "huge body");
  const h = await fetch(`${srv.url}/healthz`);
  assert.equal(h.status, 200);
});

it("GET /healthz -> 200", async () => {
  const r = await fetch(`${srv.url}/healthz`);
  assert.equal(r.status, 200);
});

it("unknown paths -> 404, never a hang", async () => {
  for (const p of ["/nope", "/api", "/api/nope", "/metricsx", "/healthz/x", "/socket.io.js"]) {
    const r = await fetch(`${srv.url}${p}`, { signal: AbortSignal.timeout(5000) });
    assert.equal(r.status, 404, p);
    await r.arrayBuffer();
  }
  const r = await fetch(`${srv.url}/nope`, { method: "POST", body: "x", signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 404);
});

it("GET /api/publish is refused (404 or 405)", async () => {
  const r = await fetch(`${srv.url}/api/publish`, { signal: AbortSignal.timeout(5000) });
  assert.ok(r.status === 404 || r.status === 405, `status ${r.status}`);
});

it("keep-alive: two pipelined requests on one connection get two responses", async () => {
  const req = `GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n`;
  const { text } = await rawHttp(srv.port, req, { ms: 1500 });
  const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
  assert.deepEqual(statuses, [200, 404], text);
});

it("HTTP/1.0 request gets an answer and the connection is closed", async () => {
  const { text, closed } = await rawHttp(srv.port, "GET /healthz HTTP/1.0\r\n\r\n", { ms: 3000 });
  assert.equal(statusOf(text), 200, text);
  assert.equal(closed, true);
});

it("GET /metrics: published counter with namespace/topic labels (StreamFenceJs names)", async () => {
  const before = metricValue(await metrics(), "streamfence_messages_published_total", { namespace: "/feed", topic: "news" }) ?? 0;
  await publish(srv.port, [1, 2, 3].map((n) => ({ namespace: "/feed", topic: "news", payload: n })));
  const text = await metrics();
  const after = metricValue(text, "streamfence_messages_published_total", { namespace: "/feed", topic: "news" });
  assert.equal(after, before + 3, `streamfence_messages_published_total{namespace="/feed",topic="news"} in:\n${text}`);
  assert.match(text, /# TYPE streamfence_messages_published_total counter/);
  assert.notEqual(metricValue(text, "streamfence_messages_published_bytes_total", { namespace: "/feed", topic: "news" }), null,
    "streamfence_messages_published_bytes_total");
});

it("GET /metrics: connections counter per namespace", async () => {
  const before = metricValue(await metrics(), "streamfence_connections_total", { namespace: "/feed" }) ?? 0;
  const s = await connected(client(`${srv.url}/feed`, MODES.websocket));
  try {
    const text = await metrics();
    const after = metricValue(text, "streamfence_connections_total", { namespace: "/feed" });
    assert.equal(after, before + 1, `streamfence_connections_total{namespace="/feed"} in:\n${text}`);
  } finally { closeAll(s); }
});

it("GET /metrics: overflow counter with reason (message exceeds maxQueuedBytesPerClient)", async () => {
  const s = await connected(client(`${srv.url}/tiny`, MODES.websocket));
  try {
    const t = new Inbox(s, "t");
    s.emit("subscribe", { topic: "t" });
    assert.equal(await s.timeout(5000).emitWithAck("ping"), "pong");
    await publish(srv.port, { namespace: "/tiny", topic: "t", payload: "this payload is longer than ten bytes" });
    await publish(srv.port, { namespace: "/tiny", topic: "t", payload: 1 }); // fits: "1" is 1 byte
    assert.deepEqual(await t.next(), [1], "the oversized message is not delivered, the small one is");
    const text = await metrics();
    const v = metricValue(text, "streamfence_queue_overflow_total",
      { namespace: "/tiny", topic: "t", reason: "message exceeds maxQueuedBytesPerClient" });
    assert.equal(v, 1, `streamfence_queue_overflow_total{namespace="/tiny",topic="t",reason="message exceeds maxQueuedBytesPerClient"} in:\n${text}`);
  } finally { closeAll(s); }
});

test("server shuts down cleanly on SIGTERM", async () => {
  assertCleanExit(await srv.stop());
});
