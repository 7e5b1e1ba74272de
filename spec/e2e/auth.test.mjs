// auth.test.mjs - authorization with real socket.io-client v4 clients (issue 4, DESIGN.md §4
// "Auth is real", STREAMFENCE.md §1.10): the namespace `authorize(token, namespace, topic,
// client)` hook on subscribe with the token taken from the subscribe payload, the CONNECT
// auth {token} or an `Authorization: Bearer` header (in that order of precedence); refusals
// answer the subscribe ack {ok:false, code:"AUTH_REJECTED", message} and emit an `error`
// event; streamfence_auth_rejected_total counts them; 5 failures from one address turn into
// RATE_LIMITED (streamfence_auth_rate_limited_total); `authRequired` refuses CONNECT with a
// connect_error (message = reason, data.code); the principal is visible to later hooks;
// a hook error refuses (documented default); StreamFenceJs static tokens (`auth: TOKEN`,
// `tokens`, `tokensFile`) from JSON and YAML configs.
//
// Failed attempts are counted per remote address and reset by a success, so every test that
// provokes refusals ends with a successful authorization from the same address, and the
// rate-limit test connects from its own loopback address (ws `localAddress`).
import { describe, it, before, after, test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import path from "node:path";
import {
  startServer, assertCleanExit, client, connected, once, Inbox, closeAll, MODES, publish,
  tmpDir, withTimeout,
} from "./helpers.mjs";

const CONFIG = `
local json = sluice.json
local principals = { good = "alice", ["bob-token"] = "bob" }
local function authorize(token, namespace, topic, client)
  if token == "explode" then error("authorize exploded") end
  if token == "echo" then
    return nil, string.format("echo|%s|%s|%s", namespace, tostring(topic),
                              client and client.id or "noclient")
  end
  local p = principals[token]
  if p then return p end
  return nil, "bad token: " .. tostring(token)
end
local function app_event(client, event, args, ack)
  if event == "ping" then
    if ack then ack("pong") end
  elseif event == "whoami" then
    if ack then ack(client.principal or json.null, client.id) end
  end
end
local function route(msg)
  if msg.topic == "who" then
    return { payload = { principal = msg.principal or json.null, clientId = msg.clientId or json.null,
                         source = msg.source } }
  end
end
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      onSubscribe = function(ev)
        if ev.namespace ~= "/audit" then sluice.publish("/audit", "subs", ev) end
      end,
      namespaces = {
        { path = "/auth", topics = { "t", "who" }, deliveryMode = "BEST_EFFORT",
          clientPublish = true, authorize = authorize, onEvent = app_event, route = route },
        { path = "/strict", topics = { "t" }, deliveryMode = "BEST_EFFORT", authRequired = true,
          authorize = authorize, onEvent = app_event },
        { path = "/audit", topics = { "subs" }, deliveryMode = "BEST_EFFORT", onEvent = app_event },
      },
    },
  },
}
`;

let srv;
before(async () => { srv = await startServer(CONFIG); });
after(async () => { await srv?.stop(); });

async function metricValue(port, name, labels = {}) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  const text = await res.text();
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(",");
  for (const line of text.split("\n")) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{([^}]*)\})?\s+(\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    if ((m[2] || "").split(",").filter(Boolean).sort().join(",") === want) return Number(m[3]);
  }
  throw new Error(`metric ${name}${JSON.stringify(labels)} not found in /metrics`);
}
const rejected = (ns) => metricValue(srv.port, "streamfence_auth_rejected_total", { namespace: ns });
const limited = (ns) => metricValue(srv.port, "streamfence_auth_rate_limited_total", { namespace: ns });

const subscribe = (s, topic, token) =>
  s.timeout(5000).emitWithAck("subscribe", token === undefined ? { topic } : { topic, token });

// connectError: resolves with the connect_error of a socket that must be refused.
function connectError(sock, ms = 8000) {
  return withTimeout(new Promise((resolve, reject) => {
    sock.once("connect", () => reject(new Error(`connected (id ${sock.id}) but CONNECT should have been refused`)));
    sock.once("connect_error", resolve);
  }), ms, "connect_error");
}

let seq = 0;
const mark = () => ({ n: ++seq });

for (const mode of ["websocket", "polling+upgrade"]) {
  describe(`authorize hook on subscribe (${mode})`, () => {
    const open = async (ns = "/auth", extra = {}) =>
      connected(client(`${srv.url}${ns}`, { ...MODES[mode], ...extra }));

    it("token in the subscribe payload: a valid one subscribes, an invalid one is refused (ack, error event, metric)", async () => {
      const s = await open();
      try {
        const errors = new Inbox(s, "error");
        const box = new Inbox(s, "t");
        const before = await rejected("/auth");
        const r = await subscribe(s, "t", "wrong");
        assert.deepEqual(r, { ok: false, code: "AUTH_REJECTED", message: "bad token: wrong" });
        assert.deepEqual(await errors.next(), [{ code: "AUTH_REJECTED", message: "bad token: wrong" }]);
        assert.equal(await rejected("/auth"), before + 1);
        const x = mark();
        await publish(srv.port, { namespace: "/auth", topic: "t", payload: x });
        assert.deepEqual(await subscribe(s, "t", "good"), { ok: true });
        const y = mark();
        await publish(srv.port, { namespace: "/auth", topic: "t", payload: y });
        assert.deepEqual(await box.next(), [y], "the refused subscription must not have received x");
        assert.equal(await rejected("/auth"), before + 1, "a success is not counted as a rejection");
        // a subscribe without any token is refused too (the hook gets nil)
        const r2 = await subscribe(s, "who");
        assert.deepEqual(r2, { ok: false, code: "AUTH_REJECTED", message: "bad token: nil" });
        assert.deepEqual(await subscribe(s, "who", "good"), { ok: true });
      } finally { closeAll(s); }
    });

    it("authorize gets (token, namespace, topic, client)", async () => {
      const s = await open();
      try {
        const r = await subscribe(s, "t", "echo");
        assert.equal(r.code, "AUTH_REJECTED");
        assert.equal(r.message, `echo|/auth|t|${s.id}`);
        assert.deepEqual(await subscribe(s, "t", "good"), { ok: true });
      } finally { closeAll(s); }
    });

    it("token from the CONNECT auth payload (io(url, {auth: {token}}))", async () => {
      const good = await open("/auth", { auth: { token: "bob-token" } });
      const bad = await open("/auth", { auth: { token: "nope" } });
      try {
        assert.deepEqual(await subscribe(good, "t"), { ok: true });
        assert.equal(await good.timeout(5000).emitWithAck("whoami"), "bob");
        const r = await subscribe(bad, "t");
        assert.deepEqual(r, { ok: false, code: "AUTH_REJECTED", message: "bad token: nope" });
        // the subscribe payload's token wins over the CONNECT one
        assert.deepEqual(await subscribe(bad, "t", "good"), { ok: true });
      } finally { closeAll(good, bad); }
    });

    it("token from an Authorization: Bearer header (extraHeaders)", async () => {
      const good = await open("/auth", { extraHeaders: { Authorization: "Bearer good" } });
      const lower = await open("/auth", { extraHeaders: { authorization: "bearer bob-token" } });
      const bad = await open("/auth", { extraHeaders: { Authorization: "Bearer forged" } });
      const both = await open("/auth", { auth: { token: "bob-token" }, extraHeaders: { Authorization: "Bearer forged" } });
      try {
        assert.deepEqual(await subscribe(good, "t"), { ok: true });
        assert.deepEqual(await subscribe(lower, "t"), { ok: true }, "the scheme is case-insensitive");
        assert.deepEqual(await subscribe(bad, "t"), { ok: false, code: "AUTH_REJECTED", message: "bad token: forged" });
        assert.deepEqual(await subscribe(both, "t"), { ok: true }, "CONNECT auth.token beats the Bearer header");
        const box = new Inbox(good, "t");
        const x = mark();
        await publish(srv.port, { namespace: "/auth", topic: "t", payload: x });
        assert.deepEqual(await box.next(), [x]);
      } finally { closeAll(good, lower, bad, both); }
    });

    it("the principal is visible to later hooks (client.principal, msg.principal, onSubscribe event)", async () => {
      const audit = await open("/audit");
      const s = await open("/auth");
      try {
        const subs = new Inbox(audit, "subs");
        assert.deepEqual(await subscribe(audit, "subs"), { ok: true });
        assert.deepEqual(await subscribe(s, "who", "bob-token"), { ok: true });
        const [ev] = await subs.until(([e]) => e.clientId === s.id);
        assert.equal(ev.principal, "bob");
        assert.equal(ev.namespace, "/auth");
        assert.equal(ev.topic, "who");
        assert.deepEqual(await s.timeout(5000).emitWithAck("whoami"), "bob");
        const box = new Inbox(s, "who");
        const r = await s.timeout(5000).emitWithAck("publish", { topic: "who", payload: mark() });
        assert.equal(r.ok, true, JSON.stringify(r));
        assert.deepEqual(await box.next(), [{ principal: "bob", clientId: s.id, source: "client" }]);
      } finally { closeAll(audit, s); }
    });

    it("an error in authorize refuses (documented default) and is counted", async () => {
      const s = await open();
      try {
        const before = await metricValue(srv.port, "sluice_lua_errors_total");
        const r = await subscribe(s, "t", "explode");
        assert.equal(r.ok, false);
        assert.equal(r.code, "AUTH_REJECTED");
        assert.equal(r.message, "authorization failed");
        assert.ok(await metricValue(srv.port, "sluice_lua_errors_total") >= before + 1);
        await srv.waitLog(/authorize exploded/);
        assert.deepEqual(await subscribe(s, "t", "good"), { ok: true });
      } finally { closeAll(s); }
    });
  });

  describe(`authRequired namespace: CONNECT (${mode})`, () => {
    const mk = (extra = {}) => client(`${srv.url}/strict`, { ...MODES[mode], ...extra });

    it("no token / a bad token: connect_error with the reason and data.code AUTH_REJECTED", async () => {
      const before = await rejected("/strict");
      const a = mk();
      const b = mk({ auth: { token: "nope" } });
      try {
        const ea = await connectError(a);
        assert.equal(ea.message, "bad token: nil");
        assert.deepEqual(ea.data, { code: "AUTH_REJECTED" });
        const eb = await connectError(b);
        assert.equal(eb.message, "bad token: nope");
        assert.deepEqual(eb.data, { code: "AUTH_REJECTED" });
        assert.equal(await rejected("/strict"), before + 2);
        // on CONNECT the hook gets a nil topic and the client being connected
        const c = mk({ auth: { token: "echo" } });
        const ec = await connectError(c);
        assert.match(ec.message, /^echo\|\/strict\|nil\|[\w-]+$/);
        closeAll(c);
      } finally { closeAll(a, b); }
      const ok = await connected(mk({ auth: { token: "good" } })); // resets the failure count
      closeAll(ok);
    });

    it("a valid token (auth or Bearer) connects; the principal is set for later hooks", async () => {
      const a = await connected(mk({ auth: { token: "bob-token" } }));
      const b = await connected(mk({ extraHeaders: { Authorization: "Bearer good" } }));
      try {
        assert.deepEqual(await a.timeout(5000).emitWithAck("whoami"), "bob");
        assert.deepEqual(await b.timeout(5000).emitWithAck("whoami"), "alice");
        // the CONNECT token is reused for subscribe
        assert.deepEqual(await subscribe(a, "t"), { ok: true });
        assert.deepEqual(await subscribe(b, "t"), { ok: true });
        const box = new Inbox(a, "t");
        const x = mark();
        await publish(srv.port, { namespace: "/strict", topic: "t", payload: x });
        assert.deepEqual(await box.next(), [x]);
      } finally { closeAll(a, b); }
    });

    it("other namespaces on the same connection stay open after a refused CONNECT", async () => {
      const main = await connected(client(`${srv.url}/audit`, MODES[mode]));
      try {
        const strict = main.io.socket("/strict", { auth: { token: "nope" } });
        const e = await connectError(strict);
        assert.equal(e.data?.code, "AUTH_REJECTED");
        assert.equal(await main.timeout(5000).emitWithAck("ping"), "pong");
        strict.disconnect();
        const again = await connected(client(`${srv.url}/strict`, { ...MODES[mode], auth: { token: "good" } }));
        closeAll(again);
      } finally { closeAll(main); }
    });
  });
}

describe("rate limiting of failed authentications per address", () => {
  // websocket from dedicated loopback addresses, so no other test shares the counter
  const from = (addr, ns = "/auth", extra = {}) =>
    client(`${srv.url}${ns}`, { ...MODES.websocket, localAddress: addr, ...extra });

  it("5 failures from one address: then RATE_LIMITED (even with a valid token) on subscribe and CONNECT; other addresses unaffected", async () => {
    const s = await connected(from("127.0.0.77"));
    const other = await connected(from("127.0.0.78"));
    try {
      const errors = new Inbox(s, "error");
      const rej0 = await rejected("/auth"), lim0 = await limited("/auth");
      for (let i = 1; i <= 5; i++) {
        const r = await subscribe(s, "t", `bad-${i}`);
        assert.deepEqual(r, { ok: false, code: "AUTH_REJECTED", message: `bad token: bad-${i}` }, `attempt ${i}`);
      }
      assert.equal(await rejected("/auth"), rej0 + 5);
      const r6 = await subscribe(s, "t", "good");
      assert.equal(r6.ok, false);
      assert.equal(r6.code, "RATE_LIMITED", `6th attempt: ${JSON.stringify(r6)}`);
      assert.equal(typeof r6.message, "string");
      const [ev] = await errors.until(([e]) => e.code === "RATE_LIMITED");
      assert.equal(ev.message, r6.message);
      assert.equal(await limited("/auth"), lim0 + 1);
      assert.equal(await rejected("/auth"), rej0 + 5, "a rate-limited attempt is not an auth rejection");
      // another address is not limited
      assert.deepEqual(await subscribe(other, "t", "good"), { ok: true });
      // CONNECT of an authRequired namespace from the limited address
      const lim1 = await limited("/strict");
      const c = from("127.0.0.77", "/strict", { auth: { token: "good" } });
      const e = await connectError(c);
      assert.deepEqual(e.data, { code: "RATE_LIMITED" });
      closeAll(c);
      assert.equal(await limited("/strict"), lim1 + 1);
    } finally { closeAll(s, other); }
  });
});

// ---------------------------------------------------------------- static tokens (StreamFenceJs)

const STATIC_JSON = {
  servers: {
    sf: {
      host: "127.0.0.1", port: 0, auth: "TOKEN", tokens: ["tok-1", "tok-2"],
      namespaces: [
        { path: "/feed", topics: ["prices"], deliveryMode: "BEST_EFFORT" },
        { path: "/locked", topics: ["prices"], deliveryMode: "BEST_EFFORT", authRequired: true },
      ],
    },
  },
};

function staticYaml(tokensFile) {
  return `servers:
  sf:
    host: 127.0.0.1
    port: 0
    auth: TOKEN
    tokens:
      - yaml-tok
    tokensFile: ${tokensFile}
    namespaces:
      - path: /feed
        topics: [prices]
        deliveryMode: BEST_EFFORT
      - path: /locked
        topics: [prices]
        deliveryMode: BEST_EFFORT
        authRequired: true
`;
}

for (const kind of ["json", "yaml"]) {
  describe(`static tokens from a ${kind.toUpperCase()} config (auth: TOKEN)`, () => {
    let s2;
    const valid = kind === "json" ? ["tok-1", "tok-2"] : ["yaml-tok", "file-tok"];
    before(async () => {
      if (kind === "json") {
        s2 = await startServer(JSON.stringify(STATIC_JSON, null, 2), { ext: "json" });
      } else {
        const dir = tmpDir();
        writeFileSync(path.join(dir, "tokens.txt"), "# one token per line\n\n  file-tok  \n");
        const file = path.join(dir, "config.yaml");
        writeFileSync(file, staticYaml("tokens.txt"));
        s2 = await startServer(null, { file });
      }
    });
    after(async () => { await s2?.stop(); });

    for (const mode of ["websocket", "polling+upgrade"]) {
      it(`a valid token subscribes and receives, an invalid or missing one is refused (${mode})`, async () => {
        const s = await connected(client(`${s2.url}/feed`, MODES[mode]));
        try {
          const box = new Inbox(s, "prices");
          const errors = new Inbox(s, "error");
          assert.deepEqual(await subscribe(s, "prices", "not-a-token"),
            { ok: false, code: "AUTH_REJECTED", message: "invalid token" });
          assert.deepEqual(await errors.next(), [{ code: "AUTH_REJECTED", message: "invalid token" }]);
          assert.deepEqual(await subscribe(s, "prices"), { ok: false, code: "AUTH_REJECTED", message: "missing token" });
          for (const tok of valid) assert.deepEqual(await subscribe(s, "prices", tok), { ok: true }, tok);
          const x = mark();
          await publish(s2.port, { namespace: "/feed", topic: "prices", payload: x });
          assert.deepEqual(await box.next(), [x]);
          assert.equal(await metricValue(s2.port, "streamfence_auth_rejected_total", { namespace: "/feed" }) > 0, true);
        } finally { closeAll(s); }
      });

      it(`authRequired: CONNECT needs a valid token (${mode})`, async () => {
        const bad = client(`${s2.url}/locked`, { ...MODES[mode], auth: { token: "nope" } });
        const e = await connectError(bad);
        assert.equal(e.message, "invalid token");
        assert.deepEqual(e.data, { code: "AUTH_REJECTED" });
        closeAll(bad);
        const ok = await connected(client(`${s2.url}/locked`, { ...MODES[mode], auth: { token: valid[1] } }));
        try {
          assert.deepEqual(await subscribe(ok, "prices"), { ok: true });
        } finally { closeAll(ok); }
      });
    }

    test("server exits cleanly", async () => {
      assertCleanExit(await s2.stop());
    });
  });
}

test("server exits cleanly", async () => {
  assertCleanExit(await srv.stop());
});
