// cli-config.test.mjs - choosing ports and catching config mistakes (issue 16, items 1, 2, 6):
// `sluice check` exits 3 for a valid config with warnings and 1 under --strict / strict: true;
// two servers on one address are a check error; ${VAR} / ${VAR:-default} in YAML and JSON
// (a bare reference to a number is a number); --host/--port overrides that survive a reload;
// every example config honours SLUICE_PORT, and so does examples/client.mjs; the README's
// curl publish prints correctly in that client, its Lua example checks clean and it links
// nothing outside the repository.
import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync, readdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { spawn, execFile } from "node:child_process";
import {
  ROOT, runSluice, writeConfig, startServer, assertCleanExit, sanitizerErrors, client, connected,
  closeAll, Inbox,
} from "./helpers.mjs";

const NS = "    namespaces:\n      - path: /feed\n        topics: [prices]\n";

// A port nobody listens on right now (the OS picks it; closed again before use).
function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

describe("sluice check: warnings, --strict, strict: true", () => {
  const typo = `servers:\n  feed:\n    host: 127.0.0.1\n    port: 0\n    prot: 3000\n${NS}`;

  test("a clean config exits 0", async () => {
    const r = await runSluice(["check", writeConfig(`servers:\n  feed:\n    host: 127.0.0.1\n    port: 0\n${NS}`, "clean.yaml")]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /clean\.yaml: OK/);
  });

  test("a misspelt key: valid with warnings, exit 3, with a suggestion", async () => {
    const r = await runSluice(["check", writeConfig(typo, "typo.yaml")]);
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 3, out);
    assert.match(out, /typo\.yaml:5: server "feed": unknown server key "prot" ignored \(did you mean "port"\?\)/);
    assert.match(out, /valid with 1 warning/);
  });

  test("--strict makes it an error (exit 1), before or after the file", async () => {
    for (const args of [["check", "--strict", writeConfig(typo, "typo.yaml")], ["check", writeConfig(typo, "typo.yaml"), "--strict"]]) {
      const r = await runSluice(args);
      const out = r.stdout + r.stderr;
      assert.equal(r.code, 1, out);
      assert.match(out, /typo\.yaml:5: server "feed": unknown server key "prot" \(did you mean "port"\?; strict mode\)/);
    }
  });

  test("strict: true in the file: an error in check and at start", async () => {
    const file = writeConfig(`strict: true\n${typo}`, "strict.yaml");
    let r = await runSluice(["check", file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /unknown server key "prot"/);
    r = await runSluice([file], { timeoutMs: 10000 });
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /strict mode/);
    assert.deepEqual(sanitizerErrors(r.stderr), []);
  });

  test("two servers on the same host and port: check error, exit 1", async () => {
    const file = writeConfig(
      `servers:\n  a:\n    host: 127.0.0.1\n    port: 3999\n${NS}  b:\n    port: 3999\n${NS}`, "dup.yaml");
    const r = await runSluice(["check", file]);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /dup\.yaml:8: servers "a" and "b" both listen on 127\.0\.0\.1:3999 and 0\.0\.0\.0:3999/);
  });
});

describe("${VAR} in YAML and JSON", () => {
  test("YAML: port: ${PORT} is a number the server listens on; a default applies when unset", async () => {
    const port = await freePort();
    const file = writeConfig(
      `servers:\n  feed:\n    host: \${SLT_HOST:-127.0.0.1}\n    port: \${SLT_PORT}\n${NS}`, "env.yaml");
    const srv = await startServer(null, { file, env: { SLT_PORT: String(port), SLT_HOST: "" } });
    try {
      assert.equal(srv.port, port);
      assert.match(srv.stderr(), new RegExp(`listening on http://127\\.0\\.0\\.1:${port}`));
    } finally { assertCleanExit(await srv.stop()); }
  });

  test("JSON: a bare ${PORT} is a number, a quoted one a string", async () => {
    const port = await freePort();
    const file = writeConfig(JSON.stringify({ servers: { feed: {
      host: "127.0.0.1", port: "@PORT@", apiToken: "${SLT_TOKEN:-t0}",
      namespaces: [{ path: "/feed", topics: ["prices"] }] } } }, null, 2).replace('"@PORT@"', "${SLT_PORT}"), "env.json");
    const srv = await startServer(null, { file, env: { SLT_PORT: String(port) } });
    try {
      assert.equal(srv.port, port);
    } finally { assertCleanExit(await srv.stop()); }
    const quoted = writeConfig(`{"servers": {"feed": {"port": "\${SLT_PORT}"}}}`, "quoted.json");
    const r = await runSluice(["check", quoted], { env: { SLT_PORT: "4000" } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /port must be a number/);
  });

  test("an unset variable without a default is an error naming the line", async () => {
    const file = writeConfig(`servers:\n  feed:\n    host: 127.0.0.1\n    port: \${SLT_NOT_SET_ANYWHERE}\n${NS}`, "unset.yaml");
    const r = await runSluice(["check", file]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /environment variable SLT_NOT_SET_ANYWHERE is not set .*\(line 4\)/);
    const j = writeConfig(`{\n  "servers": {\n    "feed": {\n      "port": \${SLT_NOT_SET_ANYWHERE}\n    }\n  }\n}\n`, "unset.json");
    const rj = await runSluice(["check", j]);
    assert.equal(rj.code, 1);
    assert.match(rj.stderr, /environment variable SLT_NOT_SET_ANYWHERE is not set .* at line 4/);
  });

  test("YAML and JSON validation errors name the line", async () => {
    const y = writeConfig(`servers:\n  feed:\n    host: 127.0.0.1\n    port: 0\n    namespaces:\n      - path: /feed\n        topics: [prices]\n        maxRetries: -1\n`, "val.yaml");
    let r = await runSluice(["check", y]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /val\.yaml:8: server "feed": namespace \/feed: maxRetries must be zero or positive/);
    const j = writeConfig(`{\n  "servers": {\n    "feed": {\n      "port": "3000",\n      "namespaces": []\n    }\n  }\n}\n`, "val.json");
    r = await runSluice(["check", j]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /val\.json:4: server "feed": port must be a number/);
  });

  test("YAML and JSON syntax errors name the line", async () => {
    let r = await runSluice(["check", writeConfig(`servers:\n  feed:\n    port: 1\n   bad: [\n`, "syn.yaml")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /syn\.yaml.*line [34]/);
    r = await runSluice(["check", writeConfig(`{\n  "servers": {\n    "feed": { "port": 1,, }\n  }\n}\n`, "syn.json")]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /syn\.json.*invalid JSON at line 3/);
  });
});

describe("--host / --port", () => {
  test("override a one-server config, and a reload keeps them", async () => {
    const port = await freePort();
    const file = writeConfig(`servers:\n  feed:\n    host: 0.0.0.0\n    port: 1\n${NS}`, "one.yaml");
    const srv = await startServer(null, { file, args: ["--host", "127.0.0.1", "--port", String(port)] });
    try {
      assert.equal(srv.port, port);
      assert.match(srv.stderr(), new RegExp(`"feed" listening on http://127\\.0\\.0\\.1:${port}`));
      srv.proc.kill("SIGHUP");
      await srv.waitLog(/configuration reloaded/);
      assert.doesNotMatch(srv.stderr(), /reload failed/);
      const s = await connected(client(`${srv.url}/feed`));
      closeAll(s);
    } finally { assertCleanExit(await srv.stop()); }
  });

  test("several servers: --port needs --server NAME", async () => {
    const file = writeConfig(`servers:\n  a:\n    port: 0\n${NS}  b:\n    port: 0\n${NS}`, "two.yaml");
    let r = await runSluice([file, "--port", "4000"]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--port applies to one server and this config has 2: choose one with --server NAME/);
    const port = await freePort();
    const srv = await startServer(null, { file, args: ["--server", "b", "--port", String(port)] });
    try { assert.equal(srv.port, port); } finally { assertCleanExit(await srv.stop()); }
    r = await runSluice([file, "--port", "http"]);
    assert.equal(r.code, 2);
  });
});

describe("SLUICE_PORT everywhere", () => {
  test("every example config listens on SLUICE_PORT (and SLUICE_CONTROL_PORT)", async () => {
    const dir = path.join(ROOT, "examples");
    const files = readdirSync(dir).filter((f) => /\.(lua|json|ya?ml)$/i.test(f));
    assert.ok(files.length >= 4, files.join(" "));
    for (const f of files) {
      const port = await freePort();
      const control = await freePort();
      const two = /^streamfence\./.test(f);
      const srv = await startServer(null, {
        file: path.join(dir, f), servers: two ? 2 : 1,
        env: { SLUICE_PORT: String(port), SLUICE_CONTROL_PORT: String(control) },
      });
      try {
        assert.ok(srv.ports.includes(port), `examples/${f} listens on ${srv.ports}, not SLUICE_PORT=${port}`);
        if (two) assert.ok(srv.ports.includes(control), `examples/${f}: ${srv.ports}`);
      } finally { assertCleanExit(await srv.stop()); }
    }
  });

  test("examples/client.mjs with nobody on SLUICE_PORT: exits 1 naming the address", async () => {
    const port = await freePort();
    const r = await new Promise((resolve) => execFile(process.execPath, [path.join(ROOT, "examples/client.mjs")],
      { cwd: ROOT, env: { ...process.env, SLUICE_URL: "", SLUICE_PORT: String(port) }, timeout: 30000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, out: stdout + stderr })));
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, new RegExp(`could not connect to http://127\\.0\\.0\\.1:${port}/feed`));
  });

  test("the README: curl publish on SLUICE_PORT prints in examples/client.mjs; its Lua example checks clean; no link leaves the repository", async () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    // links: relative ones resolve inside the repository and exist
    for (const m of readme.matchAll(/\]\(([^)\s]+)\)/g)) {
      const href = m[1];
      if (/^(https?:|mailto:|#)/.test(href)) continue;
      const target = path.resolve(ROOT, href.split("#")[0]);
      assert.ok(target.startsWith(ROOT + path.sep), `README links outside the repository: ${href}`);
      assert.ok(existsSync(target), `README links to a missing file: ${href}`);
    }
    // the Lua config example is valid and warning-free
    const lua = [...readme.matchAll(/```lua\n([\s\S]*?)```/g)].map((m) => m[1]).find((b) => /servers\s*=/.test(b));
    assert.ok(lua, "the README has a Lua config example");
    const r = await runSluice(["check", writeConfig(lua, "readme.lua")], { env: { SLUICE_PORT: "0" } });
    assert.equal(r.code, 0, `README Lua example: exit ${r.code}\n${r.stdout}${r.stderr}`);

    // the curl publish, as written, against `make run`'s config on SLUICE_PORT
    const lines = readme.split("\n");
    let at = lines.findIndex((l) => /^curl /.test(l));
    assert.ok(at >= 0, "the README shows a curl publish");
    const curl = [lines[at]];
    while (curl[0].endsWith("\\")) curl[0] = curl[0] + "\n" + lines[++at];
    const port = await freePort();
    const env = { SLUICE_PORT: String(port) };
    const srv = await startServer(null, { file: path.join(ROOT, "examples/ticker.lua"), env });
    try {
      assert.equal(srv.port, port);
      const cl = spawn(process.execPath, [path.join(ROOT, "examples/client.mjs")], {
        cwd: ROOT, env: { ...process.env, SLUICE_URL: "", ...env }, stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      cl.stdout.on("data", (d) => { out += d; });
      cl.stderr.on("data", (d) => { out += d; });
      try {
        const until = async (re, ms) => {
          const end = Date.now() + ms;
          while (!re.test(out) && Date.now() < end) await new Promise((r2) => setTimeout(r2, 50));
          assert.match(out, re);
        };
        await until(new RegExp(`connected to http://127\\.0\\.0\\.1:${port}/feed`), 10000);
        await until(/ACME|GLOBEX|INITECH|UMBRELLA/, 10000);
        const res = await new Promise((resolve) => execFile("bash", ["-c", curl[0]], { env: { ...process.env, ...env } },
          (err, stdout, stderr) => resolve({ err, stdout, stderr })));
        assert.equal(res.err, null, `${curl[0]}\n${res.stderr}`);
        assert.match(res.stdout, /messageIds/);
        await until(/^X\s+1\.00\s+\(\d+ ms\)$/m, 10000);
        assert.doesNotMatch(out, /NaN/);
      } finally { cl.kill("SIGTERM"); }
    } finally { assertCleanExit(await srv.stop()); }
  });
});
