// serve.mjs - a tiny static HTTP server for the browser check (spec/e2e/browser.test.mjs):
// serves this directory's index.html at "/" and the official socket.io-client browser bundle
// (node_modules/socket.io-client/dist/socket.io.min.js) at "/socket.io.min.js", on an
// OS-assigned 127.0.0.1 port, so the page's origin differs from Sluice's.
import http from "node:http";
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../../..");

// It also answers two paths that decide when chromium dumps the DOM: --dump-dom waits for the
// page's load event (and --virtual-time-budget only counts while no fetch is pending), so the
// page adds an <img src="/hold"> that stays unanswered until the page fetches "/release"
// (once it has seen what it waited for) or holdMs pass. The page thus lives in real time until
// it is done, however slow the machine. (A pending fetch() alone did not hold chromium 156
// reliably: it sometimes dumped mid-upgrade.)
//
// serveStatic: resolves {url, requests, close()}; `requests` lists the paths asked for.
export function serveStatic({ holdMs = 15000 } = {}) {
  const files = {
    "/": { type: "text/html; charset=utf-8", file: path.join(HERE, "index.html") },
    "/socket.io.min.js": { type: "text/javascript; charset=utf-8",
      file: path.join(ROOT, "node_modules/socket.io-client/dist/socket.io.min.js") },
  };
  const requests = [];
  const log = [];
  const t0 = Date.now();
  const held = new Set();
  const release = () => {
    for (const res of held) {
      clearTimeout(res.holdTimer);
      if (!res.writableEnded) {
        res.writeHead(200, { "content-type": "text/plain", "cache-control": "no-store" });
        res.end("released");
      }
    }
    held.clear();
  };
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, "http://x").pathname;
    requests.push(p);
    log.push(`${Date.now() - t0}ms ${p}`);
    if (p === "/hold") {
      // nothing is sent until the release: the fetch stays pending as a whole
      held.add(res);
      res.holdTimer = setTimeout(() => { held.delete(res);
        if (!res.writableEnded) {
          res.writeHead(200, { "content-type": "text/plain", "cache-control": "no-store" });
          res.end("timeout");
        }
      }, holdMs);
      return;
    }
    if (p === "/release") {
      release();
      res.writeHead(200, { "content-type": "text/plain", "cache-control": "no-store" });
      res.end("ok");
      return;
    }
    const f = files[p];
    if (!f) {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
      return;
    }
    const body = readFileSync(f.file);
    res.writeHead(200, { "content-type": f.type, "content-length": body.length, "cache-control": "no-store" });
    res.end(body);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}`,
        requests,
        log,
        close: () => new Promise((r) => { release(); server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}
