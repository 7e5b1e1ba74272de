// config.test.mjs - the command line and config files (DESIGN.md §3.1-3.2, STREAMFENCE.md
// §1.1-1.4): `sluice check` on valid and invalid JSON / YAML / Lua configs (non-zero exit and
// the StreamFenceJs message, naming the file, server and namespace), the same invalid files in
// run mode (non-zero exit, no crash), a StreamFenceJs two-server YAML file running in one
// process, --server selection, --version and --help.
import { describe, it, test } from "node:test";
import assert from "node:assert/strict";
import path from "node:path";
import {
  runSluice, writeConfig, startServer, assertCleanExit, sanitizerErrors, client, connected,
  closeAll, MODES, Inbox,
} from "./helpers.mjs";

const ns = (extra = {}) => ({ path: "/feed", topics: ["prices"], ...extra });
const json = (namespaces, server = {}) => JSON.stringify({
  servers: { feed: { host: "127.0.0.1", port: 0, ...server, namespaces } },
}, null, 2);

// [title, file name, text, expected message fragments]
const BAD = [
  ["AT_LEAST_ONCE with maxRetries 0", "alo.json",
    json([ns({ path: "/alo", deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW", maxRetries: 0 })]),
    ["AT_LEAST_ONCE namespaces must allow at least one retry", "feed", "/alo"]],
  ["AT_LEAST_ONCE with DROP_OLDEST", "alo-drop.json",
    json([ns({ deliveryMode: "AT_LEAST_ONCE", overflowAction: "DROP_OLDEST", maxRetries: 1 })]),
    ["AT_LEAST_ONCE namespaces must use REJECT_NEW or SPILL_TO_DISK overflowAction"]],
  ["AT_LEAST_ONCE with coalesce", "alo-coalesce.json",
    json([ns({ deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW", maxRetries: 1, coalesce: true })]),
    ["AT_LEAST_ONCE namespaces cannot enable coalescing"]],
  ["maxInFlight over maxQueuedMessagesPerClient", "inflight.json",
    json([ns({ deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW", maxRetries: 1, maxInFlight: 8, maxQueuedMessagesPerClient: 4 })]),
    ["maxInFlight must not exceed maxQueuedMessagesPerClient"]],
  ["namespace path without a slash", "path.json", json([ns({ path: "feed" })]),
    ["namespace path must start with '/'"]],
  ["no topics", "notopics.json", json([ns({ topics: [] })]), ["namespace must define at least one topic"]],
  ["blank topic", "blank.json", json([ns({ topics: ["a", "  "] })]), ["topic names must not be blank in namespace /feed"]],
  ["duplicate topic", "duptopic.json", json([ns({ topics: ["a", "a"] })]), ["duplicate topic in namespace /feed: a"]],
  ["duplicate namespace path", "dupns.json", json([ns(), ns()]), ['Duplicate namespace path "/feed" in server "feed"']],
  ["maxQueuedMessagesPerClient 0", "maxq.json", json([ns({ maxQueuedMessagesPerClient: 0 })]),
    ["maxQueuedMessagesPerClient must be positive"]],
  ["maxQueuedBytesPerClient negative", "maxb.json", json([ns({ maxQueuedBytesPerClient: -1 })]),
    ["maxQueuedBytesPerClient must be positive"]],
  ["ackTimeoutMs 0", "ack.json", json([ns({ ackTimeoutMs: 0 })]), ["ackTimeoutMs must be positive"]],
  ["maxRetries negative", "retries.json", json([ns({ maxRetries: -1 })]), ["maxRetries must be zero or positive"]],
  ["invalid deliveryMode", "mode.json", json([ns({ deliveryMode: "FAST" })]),
    ['Invalid deliveryMode "FAST" for namespace /feed (expected: BEST_EFFORT, AT_LEAST_ONCE)']],
  ["invalid overflowAction", "overflow.json", json([ns({ overflowAction: "EXPLODE" })]),
    ['Invalid overflowAction "EXPLODE" for namespace /feed (expected: DROP_OLDEST, REJECT_NEW, COALESCE, SNAPSHOT_ONLY, SPILL_TO_DISK)']],
  ["invalid engineIoTransport", "eio.json", json([ns()], { engineIoTransport: "CARRIER_PIGEON" }),
    ['Invalid engineIoTransport "CARRIER_PIGEON" (expected: WEBSOCKET_ONLY, WEBSOCKET_OR_POLLING)']],
  ["invalid transport", "transport.json", json([ns()], { transport: "UDP" }),
    ['Invalid transport "UDP" (expected: WS, WSS)']],
  ["invalid auth", "auth.json", json([ns()], { auth: "MAYBE" }), ['Invalid auth "MAYBE" (expected: NONE, TOKEN)']],
  ["malformed JSON", "broken.json", '{"servers": {"feed": {', ["Failed to parse config file"]],
  ["malformed YAML", "broken.yaml", "servers:\n  feed:\n    namespaces: [\n  - : :\n", ["Failed to parse config file"]],
  ["unsupported extension", "config.toml", "[servers]\n", ['Unsupported config file extension ".toml"']],
  ["YAML namespace error", "bad.yml",
    "servers:\n  feed:\n    port: 0\n    namespaces:\n      - path: /alo\n        topics: [order]\n        deliveryMode: AT_LEAST_ONCE\n        maxRetries: 0\n",
    ["AT_LEAST_ONCE namespaces must allow at least one retry", "feed", "/alo"]],
  ["Lua syntax error", "syntax.lua", "return { servers = { main = {\n  port = 0,\n  namespaces = { { path = \"/x\", topics = {\"a\"} }\n} } ",
    ["syntax.lua"]],
  ["Lua runtime error in the chunk", "runtime.lua", "local x = nil\nreturn x.y\n", ["runtime.lua:2"]],
  ["Lua chunk returning a non-table", "number.lua", "return 42\n", ["number.lua"]],
  ["Lua namespace error", "lua-ns.lua",
    'return { servers = { main = { port = 0, namespaces = { { path = "/x", topics = {} } } } } }\n',
    ["namespace must define at least one topic", "main", "/x"]],
];

describe("sluice check", () => {
  it("a valid JSON config passes (exit 0) and is summarised", async () => {
    const file = writeConfig(json([ns(), ns({ path: "/alo", deliveryMode: "AT_LEAST_ONCE", overflowAction: "REJECT_NEW", maxRetries: 2 })]), "good.json");
    const r = await runSluice(["check", file]);
    assert.equal(r.code, 0, `exit ${r.code}\n${r.stdout}${r.stderr}`);
    const out = r.stdout + r.stderr;
    assert.match(out, /feed/);
    assert.match(out, /\/alo/);
  });

  it("a missing file -> non-zero exit naming the file", async () => {
    const r = await runSluice(["check", "/nonexistent/dir/sluice.json"]);
    assert.notEqual(r.code, 0);
    assert.equal(r.signal, null);
    assert.match(r.stdout + r.stderr, /\/nonexistent\/dir\/sluice\.json/);
  });

  for (const [title, name, text, expect] of BAD) {
    it(`${title} -> non-zero exit with a clear message`, async () => {
      const file = writeConfig(text, name);
      const r = await runSluice(["check", file]);
      const out = r.stdout + r.stderr;
      assert.equal(r.signal, null, `crashed with ${r.signal}:\n${out}`);
      assert.notEqual(r.code, 0, `exit 0 for an invalid config:\n${out}`);
      assert.ok(out.includes(path.basename(file)), `the message should name the file ${path.basename(file)}:\n${out}`);
      for (const e of expect) assert.ok(out.includes(e), `expected ${JSON.stringify(e)} in:\n${out}`);
      assert.deepEqual(sanitizerErrors(out), []);
    });
  }
});

describe("sluice <invalid config> (run mode)", () => {
  for (const [title, name, text, expect] of BAD.filter((_, i) => i % 3 === 0)) {
    it(`${title} -> exits non-zero without crashing`, async () => {
      const file = writeConfig(text, name);
      const r = await runSluice([file], { timeoutMs: 10000 });
      const out = r.stdout + r.stderr;
      assert.equal(r.timedOut, false, `still running after 10 s:\n${out}`);
      assert.equal(r.signal, null, `crashed with ${r.signal}:\n${out}`);
      assert.notEqual(r.code, 0, `exit 0:\n${out}`);
      assert.ok(out.includes(expect[0]), `expected ${JSON.stringify(expect[0])} in:\n${out}`);
      assert.deepEqual(sanitizerErrors(out), []);
    });
  }
});

describe("command line", () => {
  it("--version exits 0 and prints a version", async () => {
    const r = await runSluice(["--version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout + r.stderr, /\d+\.\d+/);
  });
  it("--help exits 0 and documents check", async () => {
    const r = await runSluice(["--help"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout + r.stderr, /check/);
  });
  it("no arguments -> non-zero exit with usage", async () => {
    const r = await runSluice([]);
    assert.notEqual(r.code, 0);
    assert.equal(r.signal, null);
  });
});

const TWO_SERVERS_YAML = `
servers:
  feed:
    host: 127.0.0.1
    port: 0
    namespaces:
      - path: /feed
        topics: [snapshot, delta]
        deliveryMode: BEST_EFFORT
        overflowAction: DROP_OLDEST
  control:
    host: 127.0.0.1
    port: 0
    engineIoTransport: WEBSOCKET_ONLY
    namespaces:
      - path: /commands
        topics: [command]
`;

test("a StreamFenceJs two-server YAML config runs both servers in one process", async () => {
  const srv = await startServer(TWO_SERVERS_YAML, { ext: "yaml", servers: 2 });
  try {
    const out = srv.stderr();
    const feedPort = Number(/"?feed"?[^\n]*listening on http:\/\/[^:\s]+:(\d+)/.exec(out)?.[1]);
    const ctlPort = Number(/"?control"?[^\n]*listening on http:\/\/[^:\s]+:(\d+)/.exec(out)?.[1]);
    assert.ok(feedPort && ctlPort && feedPort !== ctlPort, `listening lines:\n${out}`);
    const f = await connected(client(`http://127.0.0.1:${feedPort}/feed`, {}));
    const c = await connected(client(`http://127.0.0.1:${ctlPort}/commands`, MODES.websocket));
    try {
      // each server only knows its own namespaces
      const wrong = client(`http://127.0.0.1:${ctlPort}/feed`, MODES.websocket);
      await assert.rejects(connected(wrong), /Invalid namespace/);
      closeAll(wrong);
      // JSON/YAML configs allow client publish by default (StreamFenceJs behaviour)
      const box = new Inbox(f, "snapshot");
      assert.deepEqual(await f.timeout(5000).emitWithAck("subscribe", { topic: "snapshot" }), { ok: true });
      f.emit("publish", { topic: "snapshot", payload: { value: 42 } });
      assert.deepEqual(await box.next(), [{ value: 42 }]);
      // WEBSOCKET_ONLY: a polling handshake is refused with code 0
      const r = await fetch(`http://127.0.0.1:${ctlPort}/socket.io/?EIO=4&transport=polling`);
      assert.equal(r.status, 400);
      assert.equal((await r.json()).code, 0);
    } finally { closeAll(f, c); }
  } finally {
    assertCleanExit(await srv.stop());
  }
});

test("--server NAME runs only the named server", async () => {
  const file = writeConfig(TWO_SERVERS_YAML, "two.yaml");
  const srv = await startServer(null, { file, args: ["--server", "control"] });
  try {
    const c = await connected(client(`${srv.url}/commands`, MODES.websocket));
    closeAll(c);
    assert.equal([...srv.stderr().matchAll(/listening on/g)].length, 1, srv.stderr());
  } finally {
    assertCleanExit(await srv.stop());
  }
});

test("--server nope names the servers there are, as StreamFenceJs does", async () => {
  const file = writeConfig(TWO_SERVERS_YAML, "two-nope.yaml");
  const r = await runSluice([file, "--server", "nope"]);
  assert.equal(r.code, 1, JSON.stringify(r));
  // the list comes in the loader's order (servers are kept sorted by name)
  assert.match(r.stderr, /No server named "nope" found in config \(available: control, feed\)/);
});

test("a JSON config runs the same as YAML", async () => {
  const srv = await startServer(json([ns({ topics: ["prices", "news"] })]), { ext: "json" });
  try {
    const s = await connected(client(`${srv.url}/feed`, MODES.websocket));
    try {
      const box = new Inbox(s, "news");
      assert.deepEqual(await s.timeout(5000).emitWithAck("subscribe", { topic: "news" }), { ok: true });
      const r = await fetch(`${srv.url}/api/publish`, {
        method: "POST", headers: { "content-type": "application/json" },
        body: JSON.stringify({ namespace: "/feed", topic: "news", payload: "hi" }),
      });
      assert.equal(r.status, 200);
      assert.deepEqual(await box.next(), ["hi"]);
    } finally { closeAll(s); }
  } finally {
    assertCleanExit(await srv.stop());
  }
});
