// reload-topic-removed.test.mjs - a reload that removes a topic tells its subscribers (issue
// 16, item 10): each gets an `error` event {code: "TOPIC_REMOVED", namespace, topic, message}
// and is unsubscribed; subscribers of the topics that stay get nothing and keep receiving.
import { test } from "node:test";
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { startServer, client, connected, Inbox, closeAll, sleep, assertCleanExit, writeConfig } from "./helpers.mjs";

const cfg = (topics) => `
return { servers = { main = {
  host = "127.0.0.1", port = 0,
  namespaces = { { path = "/feed", topics = { ${topics} } } },
  onStart = function()
    sluice.every(20, function()
      sluice.publish("/feed", "ticks", { t = 1 })
      pcall(sluice.publish, "/feed", "news", { n = 1 })
    end)
  end,
} } }
`;

async function reload(port) {
  const r = await fetch(`http://127.0.0.1:${port}/api/reload`, {
    method: "POST", headers: { "content-type": "application/json" }, body: "{}", signal: AbortSignal.timeout(10000),
  });
  return { status: r.status, body: await r.json() };
}

test("removing a topic by reload sends its subscribers TOPIC_REMOVED and unsubscribes them", async () => {
  const file = writeConfig(cfg('"ticks", "news"'));
  const srv = await startServer(null, { file });
  const a = await connected(client(`${srv.url}/feed`, { transports: ["websocket"] }));
  const b = await connected(client(`${srv.url}/feed`, { transports: ["polling"] }));
  try {
    const aErr = new Inbox(a, "error"), bErr = new Inbox(b, "error");
    const aNews = new Inbox(a, "news"), bTicks = new Inbox(b, "ticks");
    assert.equal((await a.timeout(5000).emitWithAck("subscribe", { topic: "news" }))[0]?.ok ?? true, true);
    await b.timeout(5000).emitWithAck("subscribe", { topic: "ticks" });
    await aNews.next();
    await bTicks.next();
    writeFileSync(file, cfg('"ticks"'));
    const r = await reload(srv.port);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const [e] = await aErr.next(5000);
    assert.equal(e.code, "TOPIC_REMOVED");
    assert.equal(e.topic, "news");
    assert.equal(e.namespace, "/feed");
    assert.match(e.message, /news/);
    // unsubscribed: no more "news" after the event (none can be published either)
    const seen = aNews.items.length;
    await sleep(200);
    assert.equal(aNews.items.length, seen, "no news delivery after TOPIC_REMOVED");
    // the subscriber of the kept topic got no error and still receives
    const before = bTicks.items.length;
    await bTicks.count(before + 1, 5000); // ticks still delivered
    assert.equal(bErr.items.length, 0, `b got ${JSON.stringify(bErr.items)}`);
    // the topic comes back by reload: subscribing works again, the error is not repeated
    writeFileSync(file, cfg('"ticks", "news"'));
    assert.equal((await reload(srv.port)).status, 200);
    await a.timeout(5000).emitWithAck("subscribe", { topic: "news" });
    await aNews.next();
    assert.equal(aErr.items.length, 1);
  } finally {
    closeAll(a, b);
    assertCleanExit(await srv.stop());
  }
});
