// A SIGTERM that arrives right after the "listening" line must stop the server gracefully
// (exit 0), not kill it: signal handlers are installed before the servers start listening.
// Before the fix, about half of these starts died of the default SIGTERM action.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer } from "./helpers.mjs";

const CONFIG = `return { servers = { main = { host = "127.0.0.1", port = 0,
  namespaces = { { path = "/f", topics = { "t" } } } } } }`;

test("SIGTERM right after listening exits 0, twenty times", async () => {
  for (let i = 0; i < 20; i++) {
    const srv = await startServer(CONFIG);
    const r = await srv.stop();
    assert.equal(r.signal, null, `start ${i}: killed by ${r.signal}`);
    assert.equal(r.code, 0, `start ${i}: exit ${r.code}\n${r.stderr}`);
  }
});
