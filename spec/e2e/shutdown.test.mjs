// shutdown.test.mjs - SIGTERM with live clients (DESIGN.md §3.1: stop accepting, flush, close):
// websocket and polling clients are disconnected, a held polling GET is answered, and the
// process exits cleanly within 3 s.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanExit, client, connected, MODES, once, handshake, eioGet, eioPost, sleep } from "./helpers.mjs";

const CONFIG = `
return {
  servers = {
    main = {
      host = "127.0.0.1", port = 0,
      namespaces = { { path = "/feed", topics = { "prices" } } },
      onStart = function(server)
        sluice.every(20, function() sluice.publish("/feed", "prices", { t = sluice.now_ms() }) end)
      end,
    },
  },
}
`;

test("SIGTERM with connected websocket and polling clients exits cleanly", async () => {
  const srv = await startServer(CONFIG);
  let stopped = false;
  try {
    const socks = [];
    for (const opts of [MODES.websocket, MODES["polling-only"], MODES.websocket]) {
      const s = await connected(client(`${srv.url}/feed`, opts));
      s.emit("subscribe", { topic: "prices" });
      socks.push(s);
    }
    await Promise.all(socks.map((s) => once(s, "prices", 5000)));
    // a raw polling session with a held GET
    const { sid } = await handshake(srv.port);
    await eioPost(srv.port, `EIO=4&transport=polling&sid=${sid}`, "40");
    await eioGet(srv.port, `EIO=4&transport=polling&sid=${sid}`);
    const held = eioGet(srv.port, `EIO=4&transport=polling&sid=${sid}`, { ms: 5000 }).catch((e) => ({ error: e.message }));
    await sleep(200); // let the server hold the GET
    const gone = socks.map((s) => once(s, "disconnect", 5000));
    const r = await srv.stop();
    stopped = true;
    assertCleanExit(r);
    const reasons = (await Promise.all(gone)).map((a) => a[0]);
    for (const reason of reasons) assert.ok(typeof reason === "string", reason);
    const h = await held;
    assert.ok(h.error || h.status === 200, `held GET: ${JSON.stringify(h)}`);
  } finally {
    if (!stopped) await srv.stop();
  }
});
