// recovery-config.test.mjs - the namespace key `recovery` in Lua, JSON and YAML: defaults,
// `sluice check`'s summary, and the errors (unknown keys inside the block are errors, with
// the file and namespace prefix and a suggestion, like the api / cors / tls blocks).
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { writeConfig, runSluice } from "./helpers.mjs";

const lua = (rec) => `return { servers = { main = { host = "127.0.0.1", port = 0, namespaces = {
  { path = "/r", topics = { "t" }, recovery = ${rec} } } } } }`;

describe("recovery config", () => {
  const bad = [
    [`{ maxDisconnectionMS = 1000 }`, /config\.lua(:\d+)?: server "main": namespace \/r: recovery: unknown recovery key "maxDisconnectionMS" \(did you mean "maxDisconnectionMs"\?\)/],
    [`{ history = 10 }`, /namespace \/r: recovery: unknown recovery key "history"/],
    [`{ historySize = 0 }`, /namespace \/r: recovery: historySize must be positive/],
    [`{ historyBytes = "1MB" }`, /namespace \/r: recovery: historyBytes must be (a number|an integer)/],
    [`{ maxDisconnectionMs = -5 }`, /recovery: maxDisconnectionMs must be positive/],
    [`{ maxDisconnectionMs = 90000000 }`, /recovery: maxDisconnectionMs must be at most 86400000/],
    [`{ reauthorize = "no" }`, /recovery: reauthorize must be a boolean/],
    [`"on"`, /namespace \/r: recovery must be a table/],
  ];
  for (const [frag, re] of bad) {
    it(`sluice check refuses recovery = ${frag}`, async () => {
      const r = await runSluice(["check", writeConfig(lua(frag))]);
      assert.notEqual(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout + r.stderr, re);
    });
  }

  it("Lua: defaults, and sluice check summarises the block", async () => {
    const r = await runSluice(["check", writeConfig(lua("{}"))]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, /recovery 120000ms \/ 1000 msgs \/ 1048576 bytes/);
    const t = await runSluice(["check", writeConfig(lua("true"))]);
    assert.match(t.stdout + t.stderr, /recovery 120000ms \/ 1000 msgs \/ 1048576 bytes/);
  });

  it("JSON and YAML take the same keys and give the same errors", async () => {
    const ns = (recovery) => ({ servers: { main: { port: 0, namespaces: [{ path: "/r", topics: ["t"], recovery }] } } });
    const ok = await runSluice(["check", writeConfig(JSON.stringify(ns({ maxDisconnectionMs: 5000, historySize: 50, historyBytes: 4096, reauthorize: false })), "config.json")]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout + ok.stderr, /recovery 5000ms \/ 50 msgs \/ 4096 bytes \(no reauthorize\)/);
    const bad = await runSluice(["check", writeConfig(JSON.stringify(ns({ historySize: 5, sizeHistory: 1 })), "config.json")]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stdout + bad.stderr, /config\.json(:\d+)?: server "main": namespace \/r: recovery: unknown recovery key "sizeHistory"/);
    const yaml = `servers:\n  main:\n    port: 0\n    namespaces:\n      - path: /r\n        topics: [t]\n        recovery:\n          maxDisconnectionMs: 7000\n          historyBytes: 100000\n`;
    const y = await runSluice(["check", writeConfig(yaml, "config.yaml")]);
    assert.equal(y.code, 0, y.stdout + y.stderr);
    assert.match(y.stdout + y.stderr, /recovery 7000ms \/ 1000 msgs \/ 100000 bytes/);
    const ybad = await runSluice(["check", writeConfig(yaml.replace("historyBytes", "historyByte"), "config.yaml")]);
    assert.notEqual(ybad.code, 0);
    assert.match(ybad.stdout + ybad.stderr, /config\.yaml(:\d+)?: server "main": namespace \/r: recovery: unknown recovery key "historyByte" \(did you mean "historyBytes"\?\)/);
  });
});
