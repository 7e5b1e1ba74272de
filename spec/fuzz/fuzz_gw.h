/* fuzz_gw.h - the harness the network fuzz targets share (fuzz_http, fuzz_ws, fuzz_session,
 * fuzz_api): a real gateway and real connections, no network.
 *
 * The config is loaded once by the real JSON loader (one server: a plain namespace, an
 * AT_LEAST_ONCE one, a COALESCE one, one that needs a token; an API token; the raw Engine.IO
 * endpoint /eio/). Every input gets a fresh gateway built from it (sl_gateway_build,
 * sluice_start on 127.0.0.1:0), so nothing leaks from one input into the next and a leak is
 * reported for the input that caused it. A "client" is one end of a socketpair whose other
 * end net adopts as an accepted connection (sl__server_adopt, net.h): bytes written to the
 * client end go through libuv's read path, read_cb, http_parser and everything above it
 * exactly as from TCP; what net writes back is drained from the client end after every step
 * (fz_pump) and kept in a small window for the targets that need to look at it (the sid, a
 * messageId). At the end the gateway is stopped (every session and connection closed), the
 * loop runs until its handles are closed, and it is freed. */
#ifndef FUZZ_GW_H
#define FUZZ_GW_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "sl_internal.h"
#include "gateway.h"
#include "net.h"
#include "sl_config.h"
#include "sl_lua.h"
#include "sluice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_CLIENTS 4
#define FZ_OUT 16384

typedef struct fz_client {
  int fd;                /* our end; -1 when closed */
  char out[FZ_OUT + 1];  /* the last FZ_OUT bytes the gateway wrote to us (NUL-terminated) */
  size_t outlen;
  size_t total;          /* every byte the gateway wrote to us */
} fz_client;

static uv_loop_t fz_loop;
static sl_config *fz_cfg;
static sluice_t *fz_gw;
static fz_client fz_clients[FZ_MAX_CLIENTS];

static const char fz_config_json[] =
    "{\"servers\":{\"main\":{\"host\":\"127.0.0.1\",\"port\":0,\"maxPayload\":4096,"
    "\"apiToken\":\"t\",\"auth\":\"TOKEN\",\"tokens\":[\"good\"],"
    "\"pingIntervalMs\":600000,\"pingTimeoutMs\":600000,\"connectTimeoutMs\":600000,"
    "\"socketHighWaterBytes\":2048,\"spillRootPath\":\"/tmp/sluice-fuzz-spill-none\","
    "\"namespaces\":["
    "{\"path\":\"/feed\",\"topics\":[\"prices\",\"news\"],\"overflowAction\":\"DROP_OLDEST\","
    "\"maxQueuedMessagesPerClient\":4,\"maxQueuedBytesPerClient\":4096},"
    "{\"path\":\"/ack\",\"topics\":[\"q\"],\"deliveryMode\":\"AT_LEAST_ONCE\",\"maxRetries\":2,"
    "\"maxInFlight\":2,\"ackTimeoutMs\":600000,\"overflowAction\":\"REJECT_NEW\","
    "\"maxQueuedMessagesPerClient\":8},"
    "{\"path\":\"/co\",\"topics\":[\"s\"],\"overflowAction\":\"COALESCE\",\"coalesce\":true,"
    "\"coalesceKey\":\"symbol\",\"maxQueuedMessagesPerClient\":2},"
    "{\"path\":\"/auth\",\"topics\":[\"x\"],\"authRequired\":true},"
    "{\"path\":\"/retry\",\"topics\":[\"r\"],\"deliveryMode\":\"AT_LEAST_ONCE\","
    "\"maxRetries\":1,\"ackTimeoutMs\":1,\"retryBackoff\":2}"
    "]}}}";

/* Publishes from the embedder side (the route the API and Lua take), so lanes, acks and the
 * session flush have something to deliver. */
static inline void fz_publish(const char *ns, const char *topic, const char *json) {
  (void)sluice_publish(fz_gw, ns, topic, json, strlen(json), NULL, NULL);
}

static inline void fz_init_once(void) {
  if (fz_cfg) return;
  signal(SIGPIPE, SIG_IGN); /* as the sluice program does: a gone peer is an EPIPE */
  sl_log_threshold = getenv("FUZZ_LOG") ? SL_LOG_DEBUG : SL_LOG_ERROR;
  if (uv_loop_init(&fz_loop) != 0) abort();
  sl_lua *vm = sl_lua_new(NULL); /* only to run the loader; kept (the config's refs live here) */
  char err[512];
  if (sl_config_load_string(sl_lua_state(vm), fz_config_json, sizeof fz_config_json - 1, "json",
                            "<fuzz>", &fz_cfg, err, sizeof err) != 0) {
    fprintf(stderr, "fuzz config: %s\n", err);
    abort();
  }
  /* the raw endpoint, without a script: its hooks are unset, sessions still run */
  free(fz_cfg->servers[0].eio_path);
  fz_cfg->servers[0].eio_path = sl_xstrdup("/eio/");
}

/* Read everything the gateway wrote to client i so far. */
static inline void fz_drain(int i) {
  fz_client *c = &fz_clients[i];
  if (c->fd < 0) return;
  char buf[8192];
  for (;;) {
    ssize_t k = read(c->fd, buf, sizeof buf);
    if (k <= 0) return;
    bool more = (size_t)k == sizeof buf; /* a short read emptied the socket */
    c->total += (size_t)k;
    if ((size_t)k >= FZ_OUT) {
      memcpy(c->out, buf + k - FZ_OUT, FZ_OUT);
      c->outlen = FZ_OUT;
    } else {
      if (c->outlen + (size_t)k > FZ_OUT) {
        size_t drop = c->outlen + (size_t)k - FZ_OUT;
        memmove(c->out, c->out + drop, c->outlen - drop);
        c->outlen -= drop;
      }
      memcpy(c->out + c->outlen, buf, (size_t)k);
      c->outlen += (size_t)k;
    }
    c->out[c->outlen] = 0;
    if (!more) return;
  }
}

/* fz_drain for every client that has something to read (one poll for all of them instead
 * of a read that fails with EAGAIN per client). */
static inline void fz_drain_all(void) {
  struct pollfd pfd[FZ_MAX_CLIENTS];
  int idx[FZ_MAX_CLIENTS], n = 0;
  for (int i = 0; i < FZ_MAX_CLIENTS; i++)
    if (fz_clients[i].fd >= 0) {
      pfd[n] = (struct pollfd){.fd = fz_clients[i].fd, .events = POLLIN};
      idx[n++] = i;
    }
  if (n == 0 || poll(pfd, (nfds_t)n, 0) <= 0) return;
  for (int k = 0; k < n; k++)
    if (pfd[k].revents) fz_drain(idx[k]);
}

/* Does the loop have something to do right now? Work queued for its next iteration
 * (pending callbacks, closing handles, a timer already due: uv_backend_timeout says 0), a
 * descriptor ready (its epoll fd polls readable), or a request still in flight (a write
 * the client has not drained yet, a thread-pool job: then wait for it a little). */
static inline bool fz_busy(void) {
  if (uv_backend_timeout(&fz_loop) == 0) return true;
  struct pollfd pfd = {.fd = uv_backend_fd(&fz_loop), .events = POLLIN};
  return poll(&pfd, 1, fz_loop.active_reqs.count ? 10 : 0) > 0;
}

/* Run the loop until it has nothing more to do right now, draining every client. It runs
 * one non-blocking iteration at a time and stops as soon as the loop is idle (fz_busy),
 * rather than a fixed number of iterations: each costs an epoll_wait and a read per
 * client, and the targets pump after every few bytes they send. */
static inline void fz_pump(void) {
  fz_drain_all();
  for (int round = 0; round < 256; round++) {
    uv_run(&fz_loop, UV_RUN_NOWAIT);
    fz_drain_all();
    if (!fz_busy()) break;
  }
}

/* A new client connection of the gateway's server; returns its index or -1. */
static inline int fz_connect(void) {
  int i = 0;
  while (i < FZ_MAX_CLIENTS && fz_clients[i].fd >= 0) i++;
  if (i == FZ_MAX_CLIENTS) return -1;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) abort();
  fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
  if (!sl__server_adopt(&fz_gw->servers[0], sv[1])) {
    close(sv[0]);
    close(sv[1]);
    return -1;
  }
  fz_clients[i].fd = sv[0];
  fz_clients[i].outlen = 0;
  fz_clients[i].total = 0;
  fz_clients[i].out[0] = 0;
  return i;
}

/* Write len bytes as one read on the gateway's side (as far as the kernel keeps it one),
 * then let the gateway handle them. A client whose peer is gone drops the bytes. */
static inline void fz_send(int i, const void *data, size_t len) {
  fz_client *c = &fz_clients[i];
  const char *p = data;
  int stuck = 0;
  while (len && c->fd >= 0) {
    ssize_t k = send(c->fd, p, len, MSG_NOSIGNAL);
    if (k < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN || ++stuck > 64) return; /* EPIPE: the gateway closed it */
      fz_pump();
      continue;
    }
    p += k;
    len -= (size_t)k;
  }
  fz_pump();
}

static inline void fz_send_str(int i, const char *s) { fz_send(i, s, strlen(s)); }

/* Half-close client i (the gateway reads EOF and closes its side). */
static inline void fz_shutdown(int i) {
  if (fz_clients[i].fd >= 0) shutdown(fz_clients[i].fd, SHUT_WR);
  fz_pump();
}

/* Send `data` as several reads: the first byte of the input (`split`) picks the cut points,
 * so the fuzzer also explores how a request or frame is torn across reads. */
static inline void fz_send_split(int i, uint8_t split, const uint8_t *data, size_t len) {
  size_t step = (size_t)(split & 0x3f) + 1; /* 1..64 bytes, growing */
  while (len) {
    size_t n = step < len ? step : len;
    fz_send(i, data, n);
    data += n;
    len -= n;
    if (split & 0x40) step = step * 2 + 1;
    if (split & 0x80) step += 7;
  }
}

static inline void fz_start(void) {
  fz_init_once();
  for (int i = 0; i < FZ_MAX_CLIENTS; i++) fz_clients[i].fd = -1;
  fz_gw = sl_gateway_new(&fz_loop);
  sl_gateway_build(fz_gw, fz_cfg);
  char err[256];
  if (sluice_start(fz_gw, err, sizeof err) != 0) {
    fprintf(stderr, "fuzz gateway: %s\n", err);
    abort();
  }
}

/* Stop the gateway (every session and connection closed), close the loop's handles, free. */
static inline void fz_finish(void) {
  fz_pump();
  if (getenv("FUZZ_DUMP"))
    for (int i = 0; i < FZ_MAX_CLIENTS; i++)
      if (fz_clients[i].fd >= 0)
        fprintf(stderr, "--- client %d got %zu bytes:\n%s\n", i, fz_clients[i].total,
                fz_clients[i].out);
  sluice_stop(fz_gw, NULL, NULL);
  uv_run(&fz_loop, UV_RUN_DEFAULT);
  for (int i = 0; i < FZ_MAX_CLIENTS; i++) {
    if (fz_clients[i].fd >= 0) close(fz_clients[i].fd);
    fz_clients[i].fd = -1;
  }
  sluice_free(fz_gw);
  fz_gw = NULL;
}

/* Find `"key":"` in client i's output and copy the string value after it into buf; the last
 * occurrence wins. Returns true when found. */
static inline bool fz_find_string(int i, const char *key, char *buf, size_t len) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\":\"", key);
  const char *hit = NULL, *p = fz_clients[i].out;
  while ((p = strstr(p, pat))) hit = p++;
  if (!hit) return false;
  hit += strlen(pat);
  size_t n = strcspn(hit, "\"");
  if (n >= len) return false;
  memcpy(buf, hit, n);
  buf[n] = 0;
  return true;
}

/* A masked client WebSocket frame (RFC 6455 5.2) of opcode op around payload p. */
static inline size_t fz_ws_frame(uint8_t *out, bool fin, uint8_t op, const uint8_t *p, size_t n,
                          const uint8_t mask[4]) {
  size_t h = 0;
  out[h++] = (uint8_t)((fin ? 0x80 : 0) | (op & 0x0f));
  if (n < 126) {
    out[h++] = (uint8_t)(0x80 | n);
  } else if (n < 65536) {
    out[h++] = 0x80 | 126;
    out[h++] = (uint8_t)(n >> 8);
    out[h++] = (uint8_t)n;
  } else {
    out[h++] = 0x80 | 127;
    for (int k = 7; k >= 0; k--) out[h++] = (uint8_t)((uint64_t)n >> (8 * k));
  }
  memcpy(out + h, mask, 4);
  h += 4;
  for (size_t k = 0; k < n; k++) out[h + k] = p[k] ^ mask[k % 4];
  return h + n;
}

static inline void fz_ws_send(int i, bool fin, uint8_t op, const void *p, size_t n) {
  static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  uint8_t *f = malloc(n + 14);
  size_t fl = fz_ws_frame(f, fin, op, p, n, mask);
  fz_send(i, f, fl);
  free(f);
}

static const char fz_ws_upgrade[] =
    "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#endif
