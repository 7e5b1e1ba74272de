// logs.test.mjs - what an operator reads (issue 16, item 9): a client's connect and
// disconnect at info level with remote address, transport, namespace and reason; a Lua
// error's traceback inside its record (a "traceback" field with --log-format json, indented
// continuation lines in text), never a line of literal "\n".
import { test } from "node:test";
import assert from "node:assert/strict";
import { startServer, assertCleanExit, client, connected, closeAll, MODES } from "./helpers.mjs";

const CONFIG = `
return { servers = { main = { host = "127.0.0.1", port = 0,
  onStart = function() sluice.after(20, function() error("tick failed") end) end,
  namespaces = { { path = "/feed", topics = { "prices" } } } } } }
`;

test("connect and disconnect at info: remote address, transport, namespace, reason (json)", async () => {
  const srv = await startServer(CONFIG, { args: ["--log-format", "json"] });
  try {
    for (const [mode, transport] of [["websocket", "websocket"], ["polling-only", "polling"]]) {
      const s = await connected(client(`${srv.url}/feed`, MODES[mode]));
      const id = s.id;
      await srv.waitLog(new RegExp(`client ${id} connected`));
      s.disconnect();
      await srv.waitLog(new RegExp(`client ${id} disconnected`));
      const recs = srv.stderr().split("\n").filter((l) => l.includes(id)).map((l) => JSON.parse(l));
      const con = recs.find((r) => /connected:/.test(r.msg) && !/disconnected/.test(r.msg));
      const dis = recs.find((r) => /disconnected/.test(r.msg));
      assert.equal(con.level, "info");
      assert.equal(con.msg, `client ${id} connected: namespace /feed, remote 127.0.0.1, transport ${transport}, server "main"`);
      assert.equal(dis.level, "info");
      assert.match(dis.msg, new RegExp(`^client ${id} disconnected: namespace /feed, remote 127\\.0\\.0\\.1, transport ${transport}, server "main", reason "[^"]+"$`));
      closeAll(s);
    }
  } finally { assertCleanExit(await srv.stop()); }
});

test("a Lua error's traceback: one JSON record with a traceback field", async () => {
  const srv = await startServer(CONFIG, { args: ["--log-format", "json"] });
  try {
    await srv.waitLog(/tick failed[^\n]*\n/); // the whole record, up to its end of line
    const lines = srv.stderr().split("\n").filter(Boolean);
    for (const l of lines) JSON.parse(l); // every line is a whole record
    const rec = lines.map((l) => JSON.parse(l)).find((r) => /tick failed/.test(r.msg));
    assert.equal(rec.level, "error");
    assert.match(rec.msg, /config\.lua:3: tick failed$/);
    assert.match(rec.traceback, /^stack traceback:\n\t/);
    assert.match(rec.traceback, /config\.lua:3: in function/);
  } finally { assertCleanExit(await srv.stop()); }
});

test("a Lua error's traceback in text: indented lines under the record, no literal \\n", async () => {
  const srv = await startServer(CONFIG);
  try {
    await srv.waitLog(/ {8}.*config\.lua:3: in function/);
    const text = srv.stderr();
    const at = text.split("\n").findIndex((l) => /ERROR lua: .*tick failed$/.test(l));
    assert.ok(at >= 0, text);
    const lines = text.split("\n");
    assert.equal(lines[at + 1], "    stack traceback:");
    assert.match(lines[at + 2], /^ {8}\S/);
    assert.doesNotMatch(text, /\\nstack traceback/);
  } finally { assertCleanExit(await srv.stop()); }
});

test("raw Engine.IO sessions: opened and closed at info, with path, remote, transport, reason", async () => {
  const srv = await startServer(`
return { servers = { main = { host = "127.0.0.1", port = 0,
  engineIo = { path = "/engine.io/", onMessage = function(conn, data) conn:send(data) end },
  namespaces = { { path = "/feed", topics = { "prices" } } } } } }
`);
  try {
    const r = await fetch(`http://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=polling`, { signal: AbortSignal.timeout(5000) });
    const open = JSON.parse((await r.text()).slice(1));
    await srv.waitLog(new RegExp(`engine\\.io session ${open.sid} opened: path /engine\\.io/, remote 127\\.0\\.0\\.1, transport polling, server "main"`));
    await fetch(`http://127.0.0.1:${srv.port}/engine.io/?EIO=4&transport=polling&sid=${open.sid}`,
      { method: "POST", body: "1", signal: AbortSignal.timeout(5000) }); // CLOSE packet
    await srv.waitLog(new RegExp(`engine\\.io session ${open.sid} closed: path /engine\\.io/, remote 127\\.0\\.0\\.1, transport polling, server "main", reason "[^"]+"`));
  } finally { assertCleanExit(await srv.stop()); }
});
