// recovery-helpers.mjs - plumbing for recovery.test.mjs: a TCP proxy between the real
// socket.io-client and the server, so a test can cut the transport (both TCP connections
// destroyed: the client sees "transport close", the server a closed connection) and hold
// reconnections off while it publishes.
import net from "node:net";

export class CutProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.pairs = new Set();
    this.holding = false;
    this.accepted = 0;
    this.server = net.createServer((c) => this.accept(c));
  }
  listen() {
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", () => {
      this.port = this.server.address().port;
      resolve(this.port);
    }));
  }
  accept(c) {
    if (this.holding) { c.destroy(); return; }
    this.accepted++;
    const up = net.connect(this.targetPort, "127.0.0.1");
    const pair = { c, up };
    this.pairs.add(pair);
    const end = () => { c.destroy(); up.destroy(); this.pairs.delete(pair); };
    c.on("error", end); up.on("error", end);
    c.on("close", end); up.on("close", end);
    c.pipe(up); up.pipe(c);
  }
  // cut: destroy every live connection; hold: refuse new ones until release().
  cut({ hold = true } = {}) {
    this.holding = hold;
    for (const { c, up } of this.pairs) { c.destroy(); up.destroy(); }
    this.pairs.clear();
  }
  release() { this.holding = false; }
  close() {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}
