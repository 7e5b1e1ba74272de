// examples.test.mjs - the config `make run` starts (examples/ticker.lua): it starts, and a
// socket.io-client subscribed to /feed "prices" receives ticks from its Lua producer.
// SLUICE_PORT=0 asks the example for an OS-assigned port (if it reads the variable); the port
// is taken from the "listening on" line either way.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import { ROOT, startServer, assertCleanExit, client, connected, closeAll, MODES, Inbox, runSluice } from "./helpers.mjs";

const TICKER = path.join(ROOT, "examples/ticker.lua");

test("every config in examples/ passes `sluice check`", async (t) => {
  const dir = path.join(ROOT, "examples");
  const files = existsSync(dir) ? readdirSync(dir).filter((f) => /\.(lua|json|ya?ml)$/i.test(f)) : [];
  if (!files.length) return t.skip("examples/ has no config files yet");
  for (const f of files) {
    const r = await runSluice(["check", path.join(dir, f)], { env: { SLUICE_PORT: "0" } });
    assert.equal(r.code, 0, `sluice check examples/${f}: exit ${r.code}\n${r.stdout}${r.stderr}`);
  }
});

test("examples/ticker.lua passes `sluice check`", async (t) => {
  if (!existsSync(TICKER)) return t.skip(`${TICKER} does not exist yet (the Lua engineer is writing it)`);
  const r = await runSluice(["check", TICKER], { env: { SLUICE_PORT: "0" } });
  assert.equal(r.code, 0, r.stdout + r.stderr);
});

test("examples/ticker.lua (make run): a client subscribed to /feed prices receives ticks", async (t) => {
  if (!existsSync(TICKER)) return t.skip(`${TICKER} does not exist yet (the Lua engineer is writing it)`);
  const srv = await startServer(null, { file: TICKER, env: { SLUICE_PORT: "0" } });
  try {
    for (const opts of [MODES.websocket, MODES["polling+upgrade"]]) {
      const s = await connected(client(`${srv.url}/feed`, opts));
      try {
        const ticks = new Inbox(s, "prices");
        s.emit("subscribe", { topic: "prices" });
        const items = await ticks.count(3, 10000);
        for (const args of items.slice(0, 3)) {
          assert.equal(args.length, 1, `a BEST_EFFORT tick has one argument: ${JSON.stringify(args)}`);
          assert.ok(args[0] !== null && typeof args[0] === "object", `tick payload: ${JSON.stringify(args[0])}`);
        }
      } finally { closeAll(s); }
    }
    // examples/client.mjs (SLUICE_URL, COUNT=n) prints n ticks and exits
    const CLIENT = path.join(ROOT, "examples/client.mjs");
    if (existsSync(CLIENT)) {
      const r = await new Promise((resolve) => {
        const p = spawn(process.execPath, [CLIENT], {
          cwd: ROOT, env: { ...process.env, SLUICE_URL: srv.url, COUNT: "3" }, stdio: ["ignore", "pipe", "pipe"],
        });
        let out = "";
        p.stdout.on("data", (d) => { out += d; });
        p.stderr.on("data", (d) => { out += d; });
        const t = setTimeout(() => p.kill("SIGKILL"), 15000);
        p.on("close", (code, signal) => { clearTimeout(t); resolve({ code, signal, out }); });
      });
      assert.equal(r.code, 0, `node examples/client.mjs: exit ${r.code} ${r.signal ?? ""}\n${r.out}`);
      assert.match(r.out, /connected to/, r.out);
      const ticks = r.out.split("\n").filter((l) => /\d+\.\d\d/.test(l) && !/connected/.test(l));
      assert.ok(ticks.length >= 3, `expected 3 tick lines:\n${r.out}`);
    } else {
      t.diagnostic("examples/client.mjs does not exist yet; not run");
    }
  } finally {
    assertCleanExit(await srv.stop());
  }
});
