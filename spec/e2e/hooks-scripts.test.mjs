// hooks-scripts.test.mjs - the policy scripts shipped in scripts/ (issue 4), loaded the way an
// operator would: from a JSON config with {"script": NAME, "options": {...}} hooks (and a hook
// given as a path to a .lua file next to the config), and from a Lua config with
// sluice.script(NAME, options). Real socket.io-client v4 clients, websocket and polling+upgrade.
//   jwt_hs256       a valid HS256 JWT (signed here with node:crypto) subscribes / connects;
//                   bad signature, expired, alg "none", wrong audience, topic not in the claim
//                   are refused with the script's reasons; the principal is the `sub` claim
//   static_tokens   token -> principal map with per-principal topic rules
//   rate_limit      a client publishing faster than its bucket allows gets PUBLISH_FORBIDDEN;
//                   another client has its own bucket
//   route_by_field  publish on "orders" {region} -> delivered on "orders.<region>"
//   coalesce_key    queued entries with the same (symbol, venue) key are replaced in place
//   snapshot_merge  a late subscriber gets the deep-merged state (null deletes, reset field)
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { writeFileSync, existsSync } from "node:fs";
import path from "node:path";
import {
  ROOT, startServer, assertCleanExit, client, connected, Inbox, closeAll, MODES, publish,
  tmpDir, withTimeout,
} from "./helpers.mjs";

const SECRET = "test-secret-0123456789abcdef";
const SCRIPTS = ["jwt_hs256", "static_tokens", "rate_limit", "route_by_field", "coalesce_key", "snapshot_merge"];

const APP = `
return function(client, event, args, ack)
  if event == "whoami" and ack then ack(client.principal or sluice.json.null) end
  if event == "ping" and ack then ack("pong") end
end
`;

const JWT_OPTS = { secret: SECRET, audience: "sluice", topicsClaim: "topics" };
const CONFIG = {
  servers: {
    main: {
      host: "127.0.0.1", port: 0,
      namespaces: [
        { path: "/jwt", topics: ["t", "admin"], deliveryMode: "BEST_EFFORT", onEvent: "app.lua",
          authorize: { script: "jwt_hs256", options: JWT_OPTS } },
        { path: "/jwtc", topics: ["t"], deliveryMode: "BEST_EFFORT", authRequired: true, onEvent: "app.lua",
          authorize: { script: "jwt_hs256", options: JWT_OPTS } },
        { path: "/st", topics: ["t", "admin"], deliveryMode: "BEST_EFFORT", onEvent: "app.lua",
          authorize: { script: "static_tokens", options: {
            tokens: { "s3cret-1": "alice", "s3cret-2": "bob" }, topics: { alice: ["*"], bob: ["t"] } } } },
        { path: "/rl", topics: ["chat"], deliveryMode: "BEST_EFFORT", clientPublish: true,
          onClientPublish: { script: "rate_limit", options: { rate: 0.2, burst: 3 } } },
        { path: "/grp", topics: ["orders", "orders.eu", "orders.us"], deliveryMode: "BEST_EFFORT",
          route: { script: "route_by_field", options: { field: "region" } } },
        { path: "/co", topics: ["px"], deliveryMode: "BEST_EFFORT", overflowAction: "REJECT_NEW",
          coalesce: true, maxQueuedMessagesPerClient: 100,
          coalesceKey: { script: "coalesce_key", options: { fields: ["symbol", "venue"] } } },
        { path: "/snap", topics: ["book", "book2"], deliveryMode: "BEST_EFFORT",
          snapshot: { script: "snapshot_merge", options: { reset: "_full" } } },
      ],
    },
  },
};

let srv;
before(async () => {
  const missing = SCRIPTS.filter((s) => !existsSync(path.join(ROOT, "scripts", `${s}.lua`)));
  assert.deepEqual(missing, [], `shipped scripts missing from scripts/: ${missing.join(", ")}`);
  const dir = tmpDir();
  writeFileSync(path.join(dir, "app.lua"), APP);
  const file = path.join(dir, "config.json");
  writeFileSync(file, JSON.stringify(CONFIG, null, 2));
  srv = await startServer(null, { file });
});
after(async () => { await srv?.stop(); });

// jwt: an HS256 JSON Web Token signed with node:crypto.
function jwt(claims, { secret = SECRET, header = { alg: "HS256", typ: "JWT" } } = {}) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const h = b64(header), p = b64(claims);
  const sig = crypto.createHmac("sha256", secret).update(`${h}.${p}`).digest("base64url");
  return `${h}.${p}.${sig}`;
}
const now = () => Math.floor(Date.now() / 1000);
const claims = (extra = {}) => ({ sub: "alice", aud: "sluice", exp: now() + 600, topics: ["t"], ...extra });

function connectError(sock, ms = 8000) {
  return withTimeout(new Promise((resolve, reject) => {
    sock.once("connect", () => reject(new Error("connected but CONNECT should have been refused")));
    sock.once("connect_error", resolve);
  }), ms, "connect_error");
}
const subscribe = (s, topic, token) =>
  s.timeout(5000).emitWithAck("subscribe", token === undefined ? { topic } : { topic, token });

let seq = 0;
const mark = (extra = {}) => ({ n: ++seq, ...extra });

for (const mode of ["websocket", "polling+upgrade"]) {
  const open = async (ns, extra = {}) => connected(client(`${srv.url}${ns}`, { ...MODES[mode], ...extra }));

  describe(`jwt_hs256 (${mode})`, () => {
    it("a valid HS256 token subscribes; the principal is the sub claim", async () => {
      const s = await open("/jwt");
      try {
        const box = new Inbox(s, "t");
        assert.deepEqual(await subscribe(s, "t", jwt(claims())), { ok: true });
        assert.equal(await s.timeout(5000).emitWithAck("whoami"), "alice");
        const x = mark();
        await publish(srv.port, { namespace: "/jwt", topic: "t", payload: x });
        assert.deepEqual(await box.next(), [x]);
      } finally { closeAll(s); }
    });

    it("bad signature, expired, alg none, wrong audience, topic not in the claim: refused with the reason", async () => {
      const s = await open("/jwt");
      const refused = async (token, topic, message) => {
        assert.deepEqual(await subscribe(s, topic, token), { ok: false, code: "AUTH_REJECTED", message });
      };
      try {
        await refused(jwt(claims(), { secret: "another-secret-0123456789" }), "t", "invalid token signature");
        await refused(jwt(claims({ exp: now() - 3600 })), "t", "token expired");
        // a success resets the per-address failure count (5 failures would rate-limit)
        assert.deepEqual(await subscribe(s, "t", jwt(claims())), { ok: true });
        const none = jwt(claims(), { header: { alg: "none", typ: "JWT" } }).split(".").slice(0, 2).join(".") + ".x";
        await refused(none, "t", "unsupported token algorithm");
        await refused(jwt(claims({ aud: "someone-else" })), "t", "wrong token audience");
        await refused(jwt(claims()), "admin", "token does not allow topic admin");
        assert.deepEqual(await subscribe(s, "admin", jwt(claims({ topics: ["t", "admin"] }))), { ok: true });
      } finally { closeAll(s); }
    });

    it("authRequired: CONNECT with a valid JWT (auth.token or Bearer) connects; an expired one is refused", async () => {
      const bad = client(`${srv.url}/jwtc`, { ...MODES[mode], auth: { token: jwt(claims({ exp: now() - 60 })) } });
      const e = await connectError(bad);
      assert.equal(e.message, "token expired");
      assert.deepEqual(e.data, { code: "AUTH_REJECTED" });
      closeAll(bad);
      const a = await open("/jwtc", { auth: { token: jwt(claims({ sub: "carol" })) } });
      const b = await open("/jwtc", { extraHeaders: { Authorization: `Bearer ${jwt(claims({ sub: "dave" }))}` } });
      try {
        assert.equal(await a.timeout(5000).emitWithAck("whoami"), "carol");
        assert.equal(await b.timeout(5000).emitWithAck("whoami"), "dave");
        assert.deepEqual(await subscribe(a, "t"), { ok: true });
      } finally { closeAll(a, b); }
    });
  });

  describe(`static_tokens, rate_limit, route_by_field (${mode})`, () => {
    it("static_tokens: token -> principal, per-principal topics", async () => {
      const s = await open("/st");
      try {
        assert.deepEqual(await subscribe(s, "admin", "s3cret-2"),
          { ok: false, code: "AUTH_REJECTED", message: "not allowed to subscribe to admin" });
        assert.deepEqual(await subscribe(s, "t", "nope"), { ok: false, code: "AUTH_REJECTED", message: "invalid token" });
        assert.deepEqual(await subscribe(s, "t", "s3cret-2"), { ok: true });
        assert.equal(await s.timeout(5000).emitWithAck("whoami"), "bob");
        assert.deepEqual(await subscribe(s, "admin", "s3cret-1"), { ok: true });
        assert.equal(await s.timeout(5000).emitWithAck("whoami"), "alice");
      } finally { closeAll(s); }
    });

    it("rate_limit: publishes beyond the burst are refused; another client has its own bucket", async () => {
      const fast = await open("/rl"), other = await open("/rl"), reader = await open("/rl");
      try {
        const box = new Inbox(reader, "chat");
        assert.deepEqual(await subscribe(reader, "chat"), { ok: true });
        const results = [];
        for (let i = 0; i < 6; i++) results.push(await fast.timeout(5000).emitWithAck("publish", { topic: "chat", payload: { i } }));
        assert.deepEqual(results.map((r) => r.ok), [true, true, true, false, false, false], JSON.stringify(results));
        for (const r of results.slice(3)) assert.equal(r.code, "PUBLISH_FORBIDDEN");
        const r = await other.timeout(5000).emitWithAck("publish", { topic: "chat", payload: { other: true } });
        assert.equal(r.ok, true, "another client is not limited");
        const got = await box.count(4);
        assert.deepEqual(got.map((a) => a[0]), [{ i: 0 }, { i: 1 }, { i: 2 }, { other: true }]);
      } finally { closeAll(fast, other, reader); }
    });

    it("route_by_field: publish on orders {region} is delivered on orders.<region> only", async () => {
      const s = await open("/grp");
      try {
        const all = new Inbox(s, "orders"), eu = new Inbox(s, "orders.eu"), us = new Inbox(s, "orders.us");
        for (const t of ["orders", "orders.eu", "orders.us"]) assert.deepEqual(await subscribe(s, t), { ok: true });
        const a = mark({ region: "eu" }), b = mark({ region: "us" }), c = mark({ note: "no region" });
        await publish(srv.port, [a, b, c].map((payload) => ({ namespace: "/grp", topic: "orders", payload })));
        assert.deepEqual(await eu.next(), [a]);
        assert.deepEqual(await us.next(), [b]);
        assert.deepEqual(await all.next(), [c], "only the message without a region stays on 'orders'");
      } finally { closeAll(s); }
    });
  });

  describe(`coalesce_key, snapshot_merge (${mode})`, () => {
    it("coalesce_key: a burst keeps one queued entry per (symbol, venue), replaced in place", async () => {
      const s = await open("/co");
      try {
        const box = new Inbox(s, "px");
        assert.deepEqual(await subscribe(s, "px"), { ok: true });
        const tag = ++seq;
        const burst = [
          { symbol: "AAPL", venue: "X", v: 1 }, { symbol: "MSFT", venue: "X", v: 1 },
          { symbol: "AAPL", venue: "X", v: 2 }, { symbol: "AAPL", venue: "Y", v: 1 },
          { symbol: "MSFT", venue: "X", v: 2 }, { symbol: "AAPL", venue: "X", v: 3 },
        ].map((p) => ({ namespace: "/co", topic: "px", payload: { ...p, tag } }));
        await publish(srv.port, burst);
        const end = { symbol: "END", venue: "X", tag };
        await publish(srv.port, { namespace: "/co", topic: "px", payload: end });
        const got = [];
        for (;;) {
          const [p] = await box.next();
          got.push(p);
          if (p.symbol === "END") break;
        }
        assert.deepEqual(got.map((p) => `${p.symbol}|${p.venue}=${p.v ?? "-"}`),
          ["AAPL|X=3", "MSFT|X=2", "AAPL|Y=1", "END|X=-"]);
      } finally { closeAll(s); }
    });

    it("snapshot_merge: a late subscriber gets the deep-merged state (null deletes), reset starts over", async () => {
      const topic = mode === "websocket" ? "book" : "book2";
      const pub = (payload) => publish(srv.port, { namespace: "/snap", topic, payload });
      await pub({ bid: 1.5, book: { depth: 3, side: "b" }, tags: [1, 2] });
      await pub({ ask: 1.6, book: { depth: null }, tags: [3] });
      const late = async () => {
        const s = await open("/snap");
        const box = new Inbox(s, topic);
        assert.deepEqual(await subscribe(s, topic), { ok: true });
        const [state] = await box.next();
        closeAll(s);
        return state;
      };
      assert.deepEqual(await late(), { bid: 1.5, ask: 1.6, book: { side: "b" }, tags: [3] });
      await pub({ _full: true, x: 1 });
      assert.deepEqual(await late(), { x: 1 });
    });

    it("snapshot_merge: a top-level null clears the state (new subscribers get nothing until the next update)", async () => {
      const topic = mode === "websocket" ? "book" : "book2";
      await publish(srv.port, { namespace: "/snap", topic, payload: { before: "clear" } });
      await publish(srv.port, { namespace: "/snap", topic, payload: null });
      const s = await open("/snap");
      try {
        const box = new Inbox(s, topic);
        assert.deepEqual(await subscribe(s, topic), { ok: true });
        const y = mark();
        await publish(srv.port, { namespace: "/snap", topic, payload: y });
        assert.deepEqual(await box.next(), [y], "no snapshot after the state was cleared by null");
      } finally { closeAll(s); }
    });
  });
}

describe("a Lua config using sluice.script", () => {
  let s2;
  before(async () => {
    s2 = await startServer(`
return { servers = { main = { host = "127.0.0.1", port = 0, namespaces = {
  { path = "/jwt", topics = { "t" }, deliveryMode = "BEST_EFFORT",
    authorize = sluice.script("jwt_hs256", { secret = os.getenv("JWT_SECRET"), requireExp = false }),
    onEvent = function(client, event, args, ack) if ack then ack(client.principal) end end },
} } } }
`, { env: { JWT_SECRET: SECRET } });
  });
  after(async () => { await s2?.stop(); });

  it("jwt_hs256 with the secret from the environment; no exp allowed by option", async () => {
    const s = await connected(client(`${s2.url}/jwt`, MODES.websocket));
    try {
      assert.deepEqual(await subscribe(s, "t", jwt({ sub: "erin" })), { ok: true });
      assert.equal(await s.timeout(5000).emitWithAck("whoami"), "erin");
      assert.deepEqual(await subscribe(s, "t", jwt({ sub: "erin" }, { secret: "wrong-secret-0123456789" })),
        { ok: false, code: "AUTH_REJECTED", message: "invalid token signature" });
      assert.deepEqual(await subscribe(s, "t", jwt({ sub: "erin" })), { ok: true });
    } finally { closeAll(s); }
  });

  test("server exits cleanly (Lua config)", async () => {
    assertCleanExit(await s2.stop());
  });
});

test("server exits cleanly", async () => {
  assertCleanExit(await srv.stop());
});
