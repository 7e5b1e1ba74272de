// A real redis-server for the cluster and recovery tests: started on a free port of
// 127.0.0.1 with persistence off, in a directory of its own, stopped (and its directory
// removed) by stop(). Debian's redis-server is installed by `make deps` (.ci/deps.sh).
//
//   const r = await startRedis();     // { port, url, pid, cli(...args), stop(), restart() }
//   ... r.url is "redis://127.0.0.1:<port>"
//   await r.stop();
import { spawn, execFileSync } from "node:child_process";
import net from "node:net";
import fs from "node:fs";
import path from "node:path";
import { tmpDir, sleep } from "./helpers.mjs";

export const REDIS_SERVER = process.env.REDIS_SERVER || "/usr/bin/redis-server";
export const REDIS_CLI = process.env.REDIS_CLI || "/usr/bin/redis-cli";

/** A TCP port nobody listens on right now (the kernel's choice). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once something answers PING on port, or rejects after ms. */
async function waitPing(port, ms) {
  const until = Date.now() + ms;
  for (;;) {
    try {
      const out = execFileSync(REDIS_CLI, ["-p", String(port), "PING"], { timeout: 2000, stdio: ["ignore", "pipe", "ignore"] }).toString();
      if (out.trim() === "PONG") return;
    } catch {
      /* not up yet */
    }
    if (Date.now() > until) throw new Error(`redis-server on port ${port} did not answer PING`);
    await sleep(25);
  }
}

/**
 * Starts redis-server on a free port (or opts.port), no RDB/AOF, logging to its directory.
 * extra: more "--key value" arguments. Returns a handle whose stop() kills it (SIGTERM, then
 * SIGKILL) and removes its directory, and whose restart() starts it again on the same port.
 */
export async function startRedis({ port, extra = [] } = {}) {
  port = port || (await freePort());
  const dir = tmpDir("sluice-redis-");
  const h = { port, url: `redis://127.0.0.1:${port}`, dir, proc: null };
  const launch = async () => {
    const args = ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
      "--dir", dir, "--logfile", path.join(dir, "redis.log"), "--daemonize", "no", ...extra];
    h.proc = spawn(REDIS_SERVER, args, { stdio: "ignore" });
    h.pid = h.proc.pid;
    await waitPing(port, 10000);
  };
  /** redis-cli against this server; returns its stdout as a string. */
  h.cli = (...args) => execFileSync(REDIS_CLI, ["-p", String(port), ...args.map(String)]).toString();
  /** Kills the server (signal: SIGKILL by default, as a crash would). */
  h.kill = async (signal = "SIGKILL") => {
    // a process killed by a signal keeps exitCode null: look at signalCode too
    if (!h.proc || h.proc.exitCode !== null || h.proc.signalCode !== null) return;
    const gone = new Promise((r) => h.proc.once("exit", r));
    h.proc.kill(signal);
    await gone;
  };
  h.restart = async () => {
    await h.kill();
    await launch();
  };
  h.stop = async () => {
    await h.kill("SIGTERM").catch(() => {});
    fs.rmSync(dir, { recursive: true, force: true });
  };
  await launch();
  return h;
}
