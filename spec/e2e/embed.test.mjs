// embed.test.mjs - examples/embed.c (build/examples/embed): Sluice embedded in a C program
// with C hooks. A real socket.io-client connects and subscribes; the C connect callback
// prints the client's id, and the C route hook drops the odd ticks the program publishes
// from C and wraps the even ones as {"routed":"c","original":{...}}.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { spawn } from "node:child_process";
import { BIN, client, connected, closeAll, Inbox, withTimeout, MODES, sanitizerErrors } from "./helpers.mjs";

// build/sluice -> build/examples/embed (build-asan/... under `make asan`)
const EMBED = path.join(path.dirname(BIN), "examples/embed");

function startEmbed(args = []) {
  const proc = spawn(EMBED, args, { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let waiters = [];
  const onData = (d) => {
    out += d;
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  proc.stdout.on("data", onData);
  proc.stderr.on("data", onData);
  const exited = new Promise((resolve) => proc.on("close", (code, signal) => resolve({ code, signal })));
  const waitOut = (re, ms = 10000) => withTimeout(new Promise((resolve) => {
    const check = () => { const m = re.exec(out); if (m) resolve(m); else waiters.push(check); };
    check();
  }), ms, `embed output matching ${re} (so far:\n${out})`);
  return { proc, exited, waitOut, output: () => out };
}

test("examples/embed: C route hook and C connect callback on a real socket.io-client", async (t) => {
  if (!existsSync(EMBED)) return t.skip(`${EMBED} not built (run make)`);
  const e = startEmbed();
  try {
    const port = Number((await e.waitOut(/embed: listening on port (\d+)/))[1]);
    for (const opts of [MODES.websocket, MODES["polling+upgrade"]]) {
      const s = await connected(client(`http://127.0.0.1:${port}/feed`, opts));
      try {
        // the connect callback fired with this client's id and namespace
        await e.waitOut(new RegExp(`connect ${s.id} /feed\\n`));
        const ticks = new Inbox(s, "prices");
        s.emit("subscribe", { topic: "prices" });
        const items = await ticks.count(4, 10000);
        for (const [payload] of items.slice(0, 4)) {
          assert.equal(payload.routed, "c", `rewritten by the C route hook: ${JSON.stringify(payload)}`);
          assert.equal(payload.original.drop, false, `odd ticks are dropped: ${JSON.stringify(payload)}`);
          assert.equal(payload.original.n % 2, 0, JSON.stringify(payload));
        }
      } finally { closeAll(s); }
    }
  } finally {
    e.proc.kill("SIGTERM");
    const r = await withTimeout(e.exited, 5000, "embed to exit after SIGTERM");
    assert.equal(r.code, 0, `exit ${r.code} ${r.signal ?? ""}\n${e.output()}`);
    assert.match(e.output(), /embed: stopped after \d+ publishes \(\d+ dropped by the C route hook\)/);
    assert.deepEqual(sanitizerErrors(e.output()), []);
  }
});

test("examples/embed --seconds stops by itself", async (t) => {
  if (!existsSync(EMBED)) return t.skip(`${EMBED} not built (run make)`);
  const e = startEmbed(["--seconds", "0.5"]);
  const r = await withTimeout(e.exited, 10000, "embed --seconds 0.5 to exit");
  assert.equal(r.code, 0, e.output());
  assert.match(e.output(), /embed: stopped after [1-9]\d* publishes/);
});
