// install.test.mjs - `make install PREFIX=<temp>` (issue 16, item 7): the binary, libsluice.a,
// libsluice.so, the headers, sluice.pc, the shipped scripts where the binary looks for them
// (../share/sluice/scripts next to it) and the systemd unit; a C program built with
// `pkg-config --cflags --libs sluice` runs a gateway; the installed binary tells a
// Type=notify unit READY=1 through NOTIFY_SOCKET when it was built with libsystemd.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync, lstatSync, readdirSync } from "node:fs";
import path from "node:path";
import { execFile, spawn } from "node:child_process";
import { ROOT, BIN, ASAN, tmpDir } from "./helpers.mjs";

function run(cmd, args, { env = {}, cwd = ROOT, timeoutMs = 240000 } = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

const prefix = path.join(tmpDir("sluice-install-"), "usr");
const BUILD = path.relative(ROOT, path.dirname(BIN)); // build, or build-asan under make asan
let installed = null;
async function install() {
  // the same build flags as the suite's own build (make asan passes them), so that nothing
  // is rebuilt differently by `install: all`
  const args = process.env.SLUICE_MAKE_ARGS || `BUILD=${BUILD}`;
  if (!installed) installed = run("bash", ["-c", `make -s install PREFIX="${prefix}" ${args}`]);
  return installed;
}

test("make install PREFIX=... installs everything an operator and an embedder need", async () => {
  const r = await install();
  assert.equal(r.code, 0, r.stdout + r.stderr);
  for (const f of ["bin/sluice", "lib/libsluice.a", "lib/libsluice.so", "include/sluice/sluice.h",
    "lib/pkgconfig/sluice.pc", "lib/systemd/system/sluice.service", "share/doc/sluice/LICENSE"]) {
    assert.ok(existsSync(path.join(prefix, f)), `missing ${f}`);
  }
  assert.ok(lstatSync(path.join(prefix, "lib/libsluice.so")).isSymbolicLink());
  const scripts = readdirSync(path.join(ROOT, "scripts")).filter((f) => f.endsWith(".lua"));
  for (const s of scripts) assert.ok(existsSync(path.join(prefix, "share/sluice/scripts", s)), `script ${s}`);
  const unit = readFileSync(path.join(prefix, "lib/systemd/system/sluice.service"), "utf8");
  assert.match(unit, new RegExp(`ExecStart=${prefix}/bin/sluice `));
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  assert.match(unit, /^Type=notify$/m);
  const pc = readFileSync(path.join(prefix, "lib/pkgconfig/sluice.pc"), "utf8");
  assert.match(pc, new RegExp(`^prefix=${prefix}$`, "m"));
});

test("a C program builds with `pkg-config --cflags --libs sluice` and runs a gateway", async (t) => {
  const r0 = await install();
  assert.equal(r0.code, 0, r0.stderr);
  const env = { PKG_CONFIG_PATH: path.join(prefix, "lib/pkgconfig") };
  const flags = await run("pkg-config", ["--cflags", "--libs", "sluice"], { env });
  assert.equal(flags.code, 0, flags.stderr);
  assert.match(flags.stdout, /-lsluice/);
  const dir = tmpDir("sluice-app-");
  const exe = path.join(dir, "app");
  const san = ASAN ? ["-fsanitize=address,undefined"] : [];
  const cc = await run("bash", ["-c",
    `cc -Wall -Werror ${san.join(" ")} -o "${exe}" spec/fixtures/install/app.c $(pkg-config --cflags --libs sluice)`], { env });
  assert.equal(cc.code, 0, cc.stdout + cc.stderr);
  const out = await run(exe, [], { env: { LD_LIBRARY_PATH: path.join(prefix, "lib") }, timeoutMs: 20000 });
  assert.equal(out.code, 0, out.stdout + out.stderr);
  assert.match(out.stdout, /^listening [1-9]\d*$/m);
  assert.match(out.stdout, /^published 0 msg-\S+$/m);
  assert.match(out.stdout, /^stopped$/m);
});

test("the installed binary finds the shipped scripts in ../share/sluice/scripts", async () => {
  const r0 = await install();
  assert.equal(r0.code, 0, r0.stderr);
  const dir = tmpDir("sluice-cfg-"); // no scripts/ next to this config
  const cfg = path.join(dir, "policy.lua");
  writeFileSync(cfg, `return { servers = { main = { host = "127.0.0.1", port = 0, namespaces = {
  { path = "/feed", topics = { "prices" }, coalesce = true,
    coalesceKey = sluice.script("coalesce_key", { fields = { "symbol" } }) } } } } }\n`);
  const env = { SLUICE_SCRIPTS_DIR: "" };
  const r = await run(path.join(prefix, "bin/sluice"), ["check", cfg], { env, cwd: dir });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /policy\.lua: OK/);
});

test("the README's embedding program builds against the installed library and runs", async () => {
  const r0 = await install();
  assert.equal(r0.code, 0, r0.stderr);
  const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
  const src = readme.slice(readme.indexOf("## Embedding")).match(/```c\n([\s\S]*?)```/);
  assert.ok(src, "the README's Embedding section has a C program");
  const dir = tmpDir("sluice-readme-");
  writeFileSync(path.join(dir, "app.c"), src[1]);
  const env = { PKG_CONFIG_PATH: path.join(prefix, "lib/pkgconfig") };
  const san = ASAN ? "-fsanitize=address,undefined" : "";
  const cc = await run("bash", ["-c",
    `cc -D_GNU_SOURCE -Wall ${san} -o app app.c $(pkg-config --cflags --libs sluice)`], { env, cwd: dir });
  assert.equal(cc.code, 0, cc.stdout + cc.stderr);
  // it loads examples/ticker.lua relative to its working directory
  const p = spawn(path.join(dir, "app"), [], {
    cwd: ROOT, env: { ...process.env, LD_LIBRARY_PATH: path.join(prefix, "lib"), SLUICE_PORT: "0" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  p.stdout.on("data", (d) => { out += d; });
  p.stderr.on("data", (d) => { out += d; });
  const exited = new Promise((resolve) => p.on("close", (code, signal) => resolve({ code, signal })));
  const end = Date.now() + 10000;
  while (!/listening on http:\/\/127\.0\.0\.1:\d+/.test(out) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  assert.match(out, /listening on/);
  p.kill("SIGTERM");
  const r = await exited;
  assert.deepEqual(r, { code: 0, signal: null }, out);
});

test("built with libsystemd: READY=1 on NOTIFY_SOCKET once it listens", async (t) => {
  const v = await run(BIN, ["--version"]);
  if (!/systemd notify/.test(v.stdout)) return t.skip("built without libsystemd (Type=simple)");
  const py = await run("python3", ["-c", "print(1)"]);
  if (py.code !== 0) return t.skip("python3 is needed to read a unix datagram socket");
  const dir = tmpDir("sluice-notify-");
  const sock = path.join(dir, "notify.sock");
  const cfg = path.join(dir, "c.lua");
  writeFileSync(cfg, `return { servers = { main = { host = "127.0.0.1", port = 0, namespaces = {
  { path = "/feed", topics = { "prices" } } } } } }\n`);
  // python3 binds the socket, starts sluice with NOTIFY_SOCKET, prints the first datagram
  const script = `
import socket, subprocess, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); s.settimeout(10)
p = subprocess.Popen([sys.argv[2], sys.argv[3]], env=dict(os.environ, NOTIFY_SOCKET=sys.argv[1]),
                     stderr=subprocess.PIPE)
try:
    msg = s.recv(4096).decode()
finally:
    p.terminate()
err = p.communicate(timeout=10)[1].decode()
print(msg)
print("listening-before-ready" if "listening on" in err else "no-listen-line", p.returncode)
`;
  const r = await run("python3", ["-c", script, sock, BIN, cfg], { timeoutMs: 30000 });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /READY=1/);
  assert.match(r.stdout, /MAINPID=\d+/);
  assert.match(r.stdout, /listening-before-ready 0/);
});
