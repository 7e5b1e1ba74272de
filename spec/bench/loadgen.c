/* loadgen.c - Socket.IO v5 / Engine.IO v4 WebSocket load generator for `make bench`.
 *
 * One file, libuv only. Opens N WebSocket connections to
 *   ws://HOST:PORT/socket.io/?EIO=4&transport=websocket
 * at a controlled ramp rate, joins a namespace (40/ns,), subscribes to a topic, answers
 * Engine.IO pings, optionally acks AT_LEAST_ONCE deliveries, and makes a fraction of the
 * clients stop reading once they have joined. Deliveries look like
 *   42/feed,["prices",{...,"ts":<wall-clock us or ms>,"seq":n,...}]
 * and are timed against the wall clock (publish -> receive latency, log-linear histogram),
 * counted, and checked for seq gaps per client. The server process is sampled from /proc
 * (CPU time, RSS) and the kernel send/receive queues of its sockets from /proc/net/tcp.
 * Results: one JSON line on stdout. Progress/diagnostics go to stderr.
 *
 * Phases: ramp (connect + join) -> warmup -> measure window (duration) -> report + exit.
 * Every phase is bounded in time.
 *
 * --tls: every connection speaks TLS (OpenSSL, a memory BIO pair per client, no certificate
 * verification: the load generator measures servers, not PKI), so the same client drives
 * Sluice over WSS and socket.io over https.createServer.
 */
#define _GNU_SOURCE 1
#include <uv.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ options */

static struct {
  const char *host;
  int port;
  int clients;
  const char *ns;
  const char *topic;
  double duration;   /* seconds of measurement */
  double warmup;     /* seconds between "all joined" and the window */
  double slow_fraction;
  int ack;
  int server_pid;
  double ramp_per_sec;
  double join_timeout; /* seconds; 0 = clients/ramp + 30 */
  double wait_traffic; /* after joining, wait up to S s for the first delivery before warmup */
  int sample_ms;
  int tcp_sample_ms;
  const char *label;
  int quiet;
  int tls;
  const char *window_cmd; /* run with sh -c when the window starts (e.g. perf stat -p PID) */
  int marginal_from;      /* sample the server's RSS when this many have joined (0: not) */
} opt = {
    .host = "127.0.0.1",
    .port = 3000,
    .clients = 100,
    .ns = "/feed",
    .topic = "prices",
    .duration = 10,
    .warmup = 2,
    .slow_fraction = 0,
    .ack = 0,
    .server_pid = 0,
    .ramp_per_sec = 1000,
    .join_timeout = 0,
    .wait_traffic = 0,
    .sample_ms = 200,
    .tcp_sample_ms = 1000,
    .label = "",
    .quiet = 0,
    .marginal_from = 500,
};

/* ------------------------------------------------------------------ time */

static int64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ histogram
 * Values in microseconds. Exact below 128; above, 64 sub-buckets per power of two
 * (relative error < 1.6%). Covers up to 2^46 us. */

#define H_SUB 64
#define H_LINEAR 128
#define H_MAXEXP 46
#define H_BUCKETS (H_LINEAR + (H_MAXEXP - 7 + 1) * H_SUB)

typedef struct {
  uint64_t b[H_BUCKETS];
  uint64_t count;
  double sum;
  uint64_t max;
} histo;

static int h_index(uint64_t v) {
  if (v < H_LINEAR) return (int)v;
  int msb = 63 - __builtin_clzll(v);
  if (msb > H_MAXEXP) return H_BUCKETS - 1;
  int shift = msb - 6;
  int mant = (int)(v >> shift); /* 64..127 */
  return H_LINEAR + (msb - 7) * H_SUB + (mant - H_SUB);
}

static uint64_t h_value(int idx) { /* midpoint of the bucket */
  if (idx < H_LINEAR) return (uint64_t)idx;
  int k = idx - H_LINEAR;
  int msb = 7 + k / H_SUB;
  int mant = H_SUB + k % H_SUB;
  int shift = msb - 6;
  uint64_t lo = (uint64_t)mant << shift;
  return lo + ((1ULL << shift) >> 1);
}

static void h_add(histo *h, uint64_t v) {
  h->b[h_index(v)]++;
  h->count++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
}

static uint64_t h_quantile(const histo *h, double q) {
  if (h->count == 0) return 0;
  uint64_t rank = (uint64_t)ceil(q * (double)h->count);
  if (rank < 1) rank = 1;
  uint64_t acc = 0;
  for (int i = 0; i < H_BUCKETS; i++) {
    acc += h->b[i];
    if (acc >= rank) {
      uint64_t v = h_value(i);
      return v > h->max ? h->max : v;
    }
  }
  return h->max;
}

/* ------------------------------------------------------------------ clients */

enum { ST_IDLE, ST_CONNECTING, ST_HTTP, ST_WAIT_OPEN, ST_WAIT_CONNECT, ST_JOINED, ST_CLOSED };

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t creq;
  int idx;
  uint8_t state;
  uint8_t slow;
  uint8_t closing;
  uint8_t have_seq;
  char *pend; /* bytes of an incomplete frame (or HTTP head) */
  size_t pend_len, pend_cap;
  char *frag; /* fragmented message being reassembled */
  size_t frag_len, frag_cap;
  uint8_t frag_op;
  int64_t last_seq;
  uint64_t deliv_total;
  uint64_t deliv_window;
  uint64_t gaps;
  uint64_t dups;
  SSL *ssl;          /* --tls */
  BIO *rbio, *wbio;  /* ciphertext in (from the socket) / out (to the socket) */
} client;

static SSL_CTX *tls_ctx;

static uv_loop_t *loop;
static client *cl;
static int n_started, n_connected, n_joined, n_failed, n_closed_after_join, n_connect_errors;
static int n_slow;
static int measuring;
static histo lat;               /* fast clients, window only */
static uint64_t lat_negative;   /* ts in the future (clock mismatch) */
static uint64_t deliveries_window, deliveries_total, acks_sent, bad_packets;
static uint64_t pings_answered;
static int64_t read_now_us;     /* wall clock at the current read callback */
static char *connect_pkt, *subscribe_pkt;
static size_t connect_len, subscribe_len;
static char topic_prefix[256];  /* ["topic",  */
static size_t topic_prefix_len;
static size_t ns_len;
static int ns_is_root;
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd32(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}

static void die(const char *msg) {
  fprintf(stderr, "loadgen: %s\n", msg);
  exit(2);
}

static void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n);
  if (!q) die("out of memory");
  return q;
}

static void buf_append(char **b, size_t *len, size_t *cap, const char *src, size_t n) {
  if (*len + n > *cap) {
    size_t nc = *cap ? *cap : 512;
    while (nc < *len + n) nc *= 2;
    *b = xrealloc(*b, nc);
    *cap = nc;
  }
  memcpy(*b + *len, src, n);
  *len += n;
}

/* ------------------------------------------------------------------ writing */

typedef struct {
  uv_write_t req;
  size_t len;
  char data[];
} wbuf;

static void on_write(uv_write_t *req, int status) {
  (void)status;
  free(req);
}

static void on_close(uv_handle_t *h) {
  client *c = h->data;
  if (c->ssl) SSL_free(c->ssl); /* frees both BIOs */
  c->ssl = NULL;
  free(c->pend);
  free(c->frag);
  c->pend = c->frag = NULL;
  c->pend_len = c->pend_cap = c->frag_len = c->frag_cap = 0;
}

static void client_close(client *c, int failed) {
  if (c->closing) return;
  c->closing = 1;
  if (c->state == ST_JOINED) n_closed_after_join++;
  else if (failed) n_failed++;
  c->state = ST_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void sock_send(client *c, const char *data, size_t len) {
  if (c->closing) return;
  uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  size_t done = 0;
  if (r >= 0) done = (size_t)r;
  else if (r != UV_EAGAIN) {
    client_close(c, 1);
    return;
  }
  if (done == len) return;
  wbuf *w = malloc(sizeof(wbuf) + (len - done));
  if (!w) die("out of memory");
  w->len = len - done;
  memcpy(w->data, data + done, w->len);
  b = uv_buf_init(w->data, (unsigned)w->len);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    free(w);
    client_close(c, 1);
  }
}

/* TLS: move what the engine wrote (handshake, records) to the socket. */
static void tls_flush_out(client *c) {
  char b[16384];
  int n;
  while ((n = BIO_read(c->wbio, b, sizeof b)) > 0) sock_send(c, b, (size_t)n);
}

/* Send plaintext (encrypted with --tls). */
static void raw_send(client *c, const char *data, size_t len) {
  if (!opt.tls) {
    sock_send(c, data, len);
    return;
  }
  if (c->closing) return;
  if (SSL_write(c->ssl, data, (int)len) <= 0) {
    client_close(c, 1);
    return;
  }
  tls_flush_out(c);
}

/* A masked client->server WebSocket frame (FIN set). */
static void ws_send(client *c, int opcode, const char *p, size_t n) {
  char stackbuf[1024];
  size_t hdr = 2 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + 4;
  char *f = hdr + n <= sizeof(stackbuf) ? stackbuf : malloc(hdr + n);
  if (!f) die("out of memory");
  size_t o = 0;
  f[o++] = (char)(0x80 | (opcode & 0x0f));
  if (n < 126) {
    f[o++] = (char)(0x80 | n);
  } else if (n < 65536) {
    f[o++] = (char)(0x80 | 126);
    f[o++] = (char)(n >> 8);
    f[o++] = (char)(n & 0xff);
  } else {
    f[o++] = (char)(0x80 | 127);
    for (int i = 7; i >= 0; i--) f[o++] = (char)((uint64_t)n >> (8 * i));
  }
  uint32_t m = rnd32();
  unsigned char key[4] = {(unsigned char)(m >> 24), (unsigned char)(m >> 16), (unsigned char)(m >> 8),
                          (unsigned char)m};
  memcpy(f + o, key, 4);
  o += 4;
  for (size_t i = 0; i < n; i++) f[o + i] = (char)((unsigned char)p[i] ^ key[i & 3]);
  raw_send(c, f, o + n);
  if (f != stackbuf) free(f);
}

static void ws_text(client *c, const char *s, size_t n) { ws_send(c, 1, s, n); }

/* ------------------------------------------------------------------ parsing helpers */

/* Parse a JSON number at p (integer, fraction or exponent; a quoted number is accepted too,
 * so that producers whose JSON encoder prints doubles with %.14g can send "ts" as a string).
 * The result is truncated to an integer. */
static int parse_i64(const char *p, const char *end, int64_t *out) {
  while (p < end && *p == ' ') p++;
  if (p < end && *p == '"') p++;
  char tmp[48];
  size_t n = 0;
  while (p < end && n < sizeof tmp - 1 && (isdigit((unsigned char)*p) || *p == '-' || *p == '+' || *p == '.' ||
                                          *p == 'e' || *p == 'E'))
    tmp[n++] = *p++;
  tmp[n] = 0;
  if (n == 0) return -1;
  int simple = 1;
  for (size_t i = 0; i < n; i++)
    if (!isdigit((unsigned char)tmp[i]) && !(i == 0 && tmp[i] == '-')) simple = 0;
  if (simple) {
    char *e;
    errno = 0;
    long long v = strtoll(tmp, &e, 10);
    if (e == tmp || errno) return -1;
    *out = v;
    return 0;
  }
  char *e;
  double d = strtod(tmp, &e);
  if (e == tmp || !isfinite(d) || fabs(d) > 9.2e18) return -1;
  *out = (int64_t)d;
  return 0;
}

static const char *find_key(const char *p, const char *end, const char *key, size_t klen) {
  if (p >= end) return NULL;
  const char *f = memmem(p, (size_t)(end - p), key, klen);
  return f ? f + klen : NULL;
}

static void on_delivery(client *c, const char *p, const char *end) {
  /* p points just after ["topic", */
  int64_t ts = 0, seq = -1;
  const char *v = find_key(p, end, "\"seq\":", 6);
  if (v) parse_i64(v, end, &seq);
  v = find_key(p, end, "\"ts\":", 5);
  int have_ts = v && parse_i64(v, end, &ts) == 0;

  deliveries_total++;
  c->deliv_total++;
  if (seq >= 0) {
    if (c->have_seq) {
      if (seq > c->last_seq + 1) c->gaps += (uint64_t)(seq - c->last_seq - 1);
      else if (seq <= c->last_seq) c->dups++;
    }
    if (!c->have_seq || seq > c->last_seq) c->last_seq = seq;
    c->have_seq = 1;
  }
  if (measuring) {
    deliveries_window++;
    c->deliv_window++;
    if (have_ts && !c->slow) {
      int64_t ts_us = ts < 100000000000000LL ? ts * 1000 : ts; /* ms or us */
      int64_t d = read_now_us - ts_us;
      if (d < 0) {
        lat_negative++;
        d = 0;
      }
      h_add(&lat, (uint64_t)d);
    }
  }
  if (opt.ack) {
    const char *m = find_key(p, end, "\"messageId\":\"", 13);
    if (m) {
      const char *q = memchr(m, '"', (size_t)(end - m));
      if (q && q - m < 200) {
        char out[512];
        int n;
        if (ns_is_root)
          n = snprintf(out, sizeof out, "42[\"ack\",{\"topic\":\"%s\",\"messageId\":\"%.*s\"}]", opt.topic,
                       (int)(q - m), m);
        else
          n = snprintf(out, sizeof out, "42%s,[\"ack\",{\"topic\":\"%s\",\"messageId\":\"%.*s\"}]", opt.ns,
                       opt.topic, (int)(q - m), m);
        if (n > 0 && (size_t)n < sizeof out) {
          ws_text(c, out, (size_t)n);
          acks_sent++;
        }
      }
    }
  }
}

static void marginal_mark(void);

static void on_joined(client *c) {
  c->state = ST_JOINED;
  n_joined++;
  if (n_joined == opt.marginal_from) marginal_mark();
  ws_text(c, subscribe_pkt, subscribe_len);
  if (c->slow) uv_read_stop((uv_stream_t *)&c->tcp);
}

/* One Engine.IO text packet. */
static void on_eio(client *c, const char *p, size_t n) {
  if (n == 0) {
    bad_packets++;
    return;
  }
  const char *end = p + n;
  switch (p[0]) {
  case '0': /* open */
    if (c->state == ST_WAIT_OPEN) {
      c->state = ST_WAIT_CONNECT;
      ws_text(c, connect_pkt, connect_len);
    }
    return;
  case '2': /* ping -> pong (echo any payload) */
    {
      char pong[64];
      size_t m = n < sizeof pong ? n : sizeof pong;
      memcpy(pong, p, m);
      pong[0] = '3';
      ws_text(c, pong, m);
      pings_answered++;
    }
    return;
  case '1':
    client_close(c, 0);
    return;
  case '6':
  case '3':
    return;
  case '4':
    break;
  default:
    bad_packets++;
    return;
  }
  /* Socket.IO packet */
  if (n < 2) {
    bad_packets++;
    return;
  }
  char type = p[1];
  const char *q = p + 2;
  /* binary attachments count "N-" */
  if (type == '5' || type == '6') {
    while (q < end && isdigit((unsigned char)*q)) q++;
    if (q < end && *q == '-') q++;
  }
  /* namespace */
  if (q < end && *q == '/') {
    const char *comma = memchr(q, ',', (size_t)(end - q));
    const char *nsend = comma ? comma : end;
    if (ns_is_root || (size_t)(nsend - q) != ns_len || memcmp(q, opt.ns, ns_len) != 0) return; /* other ns */
    q = comma ? comma + 1 : end;
  } else if (!ns_is_root) {
    return; /* packet for "/" while we use another namespace */
  }
  switch (type) {
  case '0': /* CONNECT reply */
    if (c->state == ST_WAIT_CONNECT) {
      if (find_key(q, end, "\"sid\"", 5)) on_joined(c);
      else {
        n_connect_errors++;
        client_close(c, 1);
      }
    }
    return;
  case '4': /* CONNECT_ERROR */
    n_connect_errors++;
    client_close(c, 1);
    return;
  case '1': /* server kicked us */
    client_close(c, 0);
    return;
  case '2': /* EVENT */
  case '5':
    while (q < end && isdigit((unsigned char)*q)) q++; /* ack id */
    if ((size_t)(end - q) >= topic_prefix_len && memcmp(q, topic_prefix, topic_prefix_len) == 0)
      on_delivery(c, q + topic_prefix_len, end);
    return;
  default:
    return;
  }
}

static void on_message(client *c, int op, const char *p, size_t n) {
  if (op == 1) on_eio(c, p, n);
  /* binary messages (attachments) are ignored */
}

/* Parse WebSocket frames from data[0..len). Returns bytes consumed, or -1 if closed. */
static ssize_t parse_frames(client *c, const char *data, size_t len) {
  size_t off = 0;
  while (off + 2 <= len) {
    const unsigned char *h = (const unsigned char *)data + off;
    int fin = h[0] & 0x80;
    int op = h[0] & 0x0f;
    int masked = h[1] & 0x80;
    uint64_t plen = h[1] & 0x7f;
    size_t hl = 2;
    if (plen == 126) {
      if (off + 4 > len) break;
      plen = ((uint64_t)h[2] << 8) | h[3];
      hl = 4;
    } else if (plen == 127) {
      if (off + 10 > len) break;
      plen = 0;
      for (int i = 0; i < 8; i++) plen = (plen << 8) | h[2 + i];
      hl = 10;
    }
    if (masked) hl += 4;
    if (plen > (64u << 20)) {
      bad_packets++;
      client_close(c, 1);
      return -1;
    }
    if (off + hl + plen > len) break;
    const char *pl = data + off + hl;
    if (masked) { /* servers must not mask, but be tolerant: unmask in place */
      char *w = (char *)pl;
      const unsigned char *k = h + hl - 4;
      for (uint64_t i = 0; i < plen; i++) w[i] = (char)((unsigned char)w[i] ^ k[i & 3]);
    }
    off += hl + (size_t)plen;
    if (op == 8) { /* close */
      client_close(c, 0);
      return -1;
    } else if (op == 9) { /* ping -> pong */
      ws_send(c, 10, pl, (size_t)plen);
    } else if (op == 10) {
      /* pong */
    } else if (op == 0) { /* continuation */
      buf_append(&c->frag, &c->frag_len, &c->frag_cap, pl, (size_t)plen);
      if (fin) {
        on_message(c, c->frag_op, c->frag, c->frag_len);
        c->frag_len = 0;
      }
    } else if (op == 1 || op == 2) {
      if (fin) on_message(c, op, pl, (size_t)plen);
      else {
        c->frag_op = (uint8_t)op;
        c->frag_len = 0;
        buf_append(&c->frag, &c->frag_len, &c->frag_cap, pl, (size_t)plen);
      }
    } else {
      bad_packets++;
    }
    if (c->closing) return -1;
  }
  return (ssize_t)off;
}

/* Handle the HTTP response head. Returns bytes consumed (0 = need more), -1 closed. */
static ssize_t parse_http(client *c, const char *data, size_t len) {
  const char *e = memmem(data, len, "\r\n\r\n", 4);
  if (!e) {
    if (len > 16384) {
      client_close(c, 1);
      return -1;
    }
    return 0;
  }
  if (len < 12 || memcmp(data, "HTTP/1.1 101", 12) != 0) {
    if (opt.quiet < 2 && n_failed < 3)
      fprintf(stderr, "loadgen: client %d: upgrade refused: %.*s\n", c->idx,
              (int)(memchr(data, '\r', len) ? (const char *)memchr(data, '\r', len) - data : 0), data);
    client_close(c, 1);
    return -1;
  }
  c->state = ST_WAIT_OPEN;
  n_connected++;
  return (ssize_t)(e + 4 - data);
}

static char readbuf[256 * 1024];
static int readbuf_busy;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  (void)h;
  (void)suggested;
  if (readbuf_busy) { /* never happens with libuv's single-threaded reads, but be safe */
    b->base = malloc(65536);
    b->len = b->base ? 65536 : 0;
    return;
  }
  readbuf_busy = 1;
  b->base = readbuf;
  b->len = sizeof readbuf;
}

static void send_upgrade(client *c);

/* Plaintext bytes from the server: the HTTP upgrade answer, then WebSocket frames. */
static void on_bytes(client *c, const char *base, size_t nread) {
  const char *data;
  size_t len;
  if (c->pend_len) {
    buf_append(&c->pend, &c->pend_len, &c->pend_cap, base, nread);
    data = c->pend;
    len = c->pend_len;
  } else {
    data = base;
    len = nread;
  }
  size_t off = 0;
  if (c->state == ST_HTTP) {
    ssize_t r = parse_http(c, data, len);
    if (r < 0) return;
    if (r == 0) { /* keep everything */
      if (data != c->pend) buf_append(&c->pend, &c->pend_len, &c->pend_cap, data, len);
      return;
    }
    off = (size_t)r;
  }
  {
    ssize_t r = parse_frames(c, data + off, len - off);
    if (r < 0) return;
    off += (size_t)r;
  }
  if (data == c->pend) {
    memmove(c->pend, c->pend + off, len - off);
    c->pend_len = len - off;
  } else if (off < len) {
    buf_append(&c->pend, &c->pend_len, &c->pend_cap, data + off, len - off);
  }
}

/* TLS: ciphertext in, handshake or plaintext out. */
static void tls_on_read(client *c, const char *base, size_t nread) {
  static char plain[64 * 1024];
  BIO_write(c->rbio, base, (int)nread);
  if (!SSL_is_init_finished(c->ssl)) {
    int r = SSL_do_handshake(c->ssl);
    tls_flush_out(c);
    if (r != 1) {
      int e = SSL_get_error(c->ssl, r);
      if (e != SSL_ERROR_WANT_READ) {
        if (opt.quiet < 2 && n_failed < 3)
          fprintf(stderr, "loadgen: client %d: TLS handshake failed\n", c->idx);
        ERR_clear_error();
        client_close(c, 1);
      }
      return;
    }
    send_upgrade(c);
  }
  for (;;) {
    int n = SSL_read(c->ssl, plain, sizeof plain);
    if (n <= 0) {
      int e = SSL_get_error(c->ssl, n);
      tls_flush_out(c);
      if (e != SSL_ERROR_WANT_READ) {
        ERR_clear_error();
        client_close(c, 1);
      }
      return;
    }
    on_bytes(c, plain, (size_t)n);
    if (c->closing) return;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
  client *c = s->data;
  int own = b->base == readbuf;
  if (own) readbuf_busy = 0;
  if (nread <= 0) {
    if (nread < 0) client_close(c, 1);
    if (!own && b->base) free(b->base);
    return;
  }
  read_now_us = wall_us();
  if (c->ssl) tls_on_read(c, b->base, (size_t)nread);
  else on_bytes(c, b->base, (size_t)nread);
  if (!own) free(b->base);
}

static void on_connect(uv_connect_t *req, int status) {
  client *c = req->data;
  if (status < 0) {
    if (opt.quiet < 2 && n_failed < 3)
      fprintf(stderr, "loadgen: client %d: connect: %s\n", c->idx, uv_strerror(status));
    client_close(c, 1);
    return;
  }
  c->state = ST_HTTP;
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (opt.tls) {
    c->ssl = SSL_new(tls_ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (!c->ssl || !c->rbio || !c->wbio) die("out of memory (TLS)");
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_connect_state(c->ssl);
    SSL_do_handshake(c->ssl); /* ClientHello */
    tls_flush_out(c);
    return; /* the upgrade request goes out once the handshake is done */
  }
  send_upgrade(c);
}

static void send_upgrade(client *c) {
  char req_text[512];
  uint32_t k[4] = {rnd32(), rnd32(), rnd32(), rnd32()};
  /* 16 random bytes in base64 = 24 chars; we just need something syntactically valid */
  static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  char key[25];
  for (int i = 0; i < 21; i++) key[i] = b64[(k[i / 6] >> ((i % 6) * 5)) & 63];
  key[21] = 'A';
  key[22] = '=';
  key[23] = '=';
  key[24] = 0;
  int n = snprintf(req_text, sizeof req_text,
                   "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                   "Host: %s:%d\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "\r\n",
                   opt.host, opt.port, key);
  raw_send(c, req_text, (size_t)n);
}

static struct sockaddr_in server_addr;

static void start_client(client *c) {
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  c->creq.data = c;
  c->state = ST_CONNECTING;
  uv_tcp_nodelay(&c->tcp, 1);
  int r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&server_addr, on_connect);
  if (r != 0) {
    if (opt.quiet < 2 && n_failed < 3) fprintf(stderr, "loadgen: connect: %s\n", uv_strerror(r));
    client_close(c, 1);
  }
}

/* ------------------------------------------------------------------ /proc sampling */

typedef struct {
  int ok;
  double cpu_s;       /* best available: schedstat sum if readable, else tick-based */
  double cpu_tick_s;  /* utime + stime from /proc/PID/stat (1/CLK_TCK resolution) */
  int sched_ok;
  long rss_kb;
  long rss_anon_kb;           /* RssAnon: the heap and stacks, without file-backed code pages */
  double user_s, sys_s;       /* utime, stime (1/CLK_TCK resolution) */
  int io_ok;                  /* /proc/PID/io readable (same user, or root) */
  unsigned long long syscr;   /* read-type system calls (read, readv, recv*, ...) */
  unsigned long long syscw;   /* write-type system calls (write, writev, send*, ...) */
  unsigned long long vcsw;    /* voluntary context switches, all threads */
  unsigned long long ivcsw;   /* involuntary context switches, all threads */
} proc_sample;

/* Context switches of every live thread (/proc/PID/task/TID/status). */
static void ctxsw(int pid, proc_sample *s) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char p2[320], buf[256];
    snprintf(p2, sizeof p2, "/proc/%d/task/%s/status", pid, e->d_name);
    FILE *f = fopen(p2, "r");
    if (!f) continue;
    while (fgets(buf, sizeof buf, f)) {
      if (strncmp(buf, "voluntary_ctxt_switches:", 24) == 0) s->vcsw += strtoull(buf + 24, NULL, 10);
      if (strncmp(buf, "nonvoluntary_ctxt_switches:", 27) == 0) s->ivcsw += strtoull(buf + 27, NULL, 10);
    }
    fclose(f);
  }
  closedir(d);
}

/* System calls made so far (/proc/PID/io syscr, syscw). */
static void syscalls(int pid, proc_sample *s) {
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/io", pid);
  FILE *f = fopen(path, "r");
  if (!f) return;
  while (fgets(buf, sizeof buf, f)) {
    if (strncmp(buf, "syscr:", 6) == 0) s->syscr = strtoull(buf + 6, NULL, 10), s->io_ok = 1;
    if (strncmp(buf, "syscw:", 6) == 0) s->syscw = strtoull(buf + 6, NULL, 10);
  }
  fclose(f);
}

/* Sum of on-CPU nanoseconds of every live thread (/proc/PID/task/TID/schedstat field 1).
 * Nanosecond resolution, unlike utime/stime; misses threads that exited (rare for servers). */
static int sched_cpu_s(int pid, double *out) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  struct dirent *e;
  unsigned long long sum = 0;
  int n = 0;
  while ((e = readdir(d))) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    char p2[320], buf[128];
    snprintf(p2, sizeof p2, "/proc/%d/task/%s/schedstat", pid, e->d_name);
    FILE *f = fopen(p2, "r");
    if (!f) continue;
    if (fgets(buf, sizeof buf, f)) {
      sum += strtoull(buf, NULL, 10);
      n++;
    }
    fclose(f);
  }
  closedir(d);
  if (n == 0 || sum == 0) return -1;
  *out = (double)sum / 1e9;
  return 0;
}

static long clk_tck;

static proc_sample sample_proc(int pid) {
  proc_sample s;
  memset(&s, 0, sizeof s);
  if (pid <= 0) return s;
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return s;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')'); /* comm may contain spaces */
  if (!p) return s;
  p++;
  /* fields after comm: 3 state ... 14 utime 15 stime */
  unsigned long ut = 0, st = 0;
  int field = 2;
  char *tok = strtok(p, " ");
  while (tok) {
    field++;
    if (field == 14) ut = strtoul(tok, NULL, 10);
    if (field == 15) {
      st = strtoul(tok, NULL, 10);
      break;
    }
    tok = strtok(NULL, " ");
  }
  s.cpu_tick_s = (double)(ut + st) / (double)clk_tck;
  s.user_s = (double)ut / (double)clk_tck;
  s.sys_s = (double)st / (double)clk_tck;
  syscalls(pid, &s);
  ctxsw(pid, &s);
  s.cpu_s = s.cpu_tick_s;
  double sc;
  if (sched_cpu_s(pid, &sc) == 0) {
    s.cpu_s = sc;
    s.sched_ok = 1;
  }
  snprintf(path, sizeof path, "/proc/%d/status", pid);
  f = fopen(path, "r");
  if (!f) return s;
  while (fgets(buf, sizeof buf, f)) {
    if (strncmp(buf, "VmRSS:", 6) == 0) s.rss_kb = strtol(buf + 6, NULL, 10);
    if (strncmp(buf, "RssAnon:", 8) == 0) {
      s.rss_anon_kb = strtol(buf + 8, NULL, 10);
      break;
    }
  }
  fclose(f);
  s.ok = 1;
  return s;
}

typedef struct {
  int ok;
  uint64_t server_txq; /* sum tx_queue, sockets with local port == server port, ESTABLISHED */
  uint64_t server_rxq;
  uint64_t client_rxq; /* sum rx_queue, sockets with remote port == server port */
  int server_socks;
} tcp_sample;

static tcp_sample sample_tcp(int port) {
  tcp_sample t = {0, 0, 0, 0, 0};
  FILE *f = fopen("/proc/net/tcp", "r");
  if (!f) return t;
  static char line[512];
  if (!fgets(line, sizeof line, f)) {
    fclose(f);
    return t;
  }
  while (fgets(line, sizeof line, f)) {
    unsigned lport = 0, rport = 0, st = 0;
    unsigned long txq = 0, rxq = 0;
    if (sscanf(line, " %*d: %*x:%x %*x:%x %x %lx:%lx", &lport, &rport, &st, &txq, &rxq) != 5) continue;
    if (st != 1) continue;
    if ((int)lport == port) {
      t.server_txq += txq;
      t.server_rxq += rxq;
      t.server_socks++;
    } else if ((int)rport == port) {
      t.client_rxq += rxq;
    }
  }
  fclose(f);
  t.ok = 1;
  return t;
}

/* ------------------------------------------------------------------ phases */

enum { PH_RAMP, PH_WAIT_TRAFFIC, PH_WARMUP, PH_MEASURE, PH_DONE };
static int phase = PH_RAMP;
static double t_start, t_ramp_done, t_traffic, t_window_start, t_window_end, t_last_tcp;
static proc_sample ps_before, ps_joined, ps_win_start, ps_win_end;
static long rss_max_kb, rss_max_window_kb;
static tcp_sample tcp_win_start, tcp_last;
static uint64_t txq_max, client_rxq_max;
static int tcp_samples;
static struct rusage ru_win_start, ru_win_end;

/* Machine-wide busy CPU seconds (all cpus) from /proc/stat, to see how much CPU other
 * processes took during the window (other = busy - server - loadgen). */
static double sys_busy_s(void) {
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return -1;
  unsigned long long v[8] = {0};
  int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                 &v[6], &v[7]);
  fclose(f);
  if (n < 8) return -1;
  /* user nice system idle iowait irq softirq steal: busy excludes idle and iowait */
  return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)clk_tck;
}
static double busy_win_start, busy_win_end;

/* The marginal cost of a connection: RSS with all joined (the window's start) minus RSS when
 * the first opt.marginal_from had joined, over the connections joined in between. Unlike the
 * per-connection figure from the RSS before the first connection, it leaves out what the
 * first connections fault in once (code pages, the first heap pages, libuv's first arrays). */
static proc_sample ps_marginal;
static int marginal_joined;
static void marginal_mark(void) {
  if (opt.server_pid <= 0) return;
  ps_marginal = sample_proc(opt.server_pid);
  marginal_joined = n_joined;
}
static double per_conn(long kb_end, long kb_from, int n) {
  return n > 0 ? (double)(kb_end - kb_from) * 1024.0 / n : 0;
}
static uv_timer_t ramp_timer, tick_timer;

static void do_sample(int with_tcp) {
  proc_sample s = sample_proc(opt.server_pid);
  if (s.ok) {
    if (s.rss_kb > rss_max_kb) rss_max_kb = s.rss_kb;
    if (phase == PH_MEASURE && s.rss_kb > rss_max_window_kb) rss_max_window_kb = s.rss_kb;
  }
  if (with_tcp) {
    tcp_sample t = sample_tcp(opt.port);
    if (t.ok) {
      tcp_last = t;
      tcp_samples++;
      if (t.server_txq > txq_max) txq_max = t.server_txq;
      if (t.client_rxq > client_rxq_max) client_rxq_max = t.client_rxq;
    }
  }
}

static void on_ramp(uv_timer_t *t) {
  double el = mono_s() - t_start;
  int target = (int)(el * opt.ramp_per_sec) + 1;
  if (target > opt.clients) target = opt.clients;
  while (n_started < target) {
    start_client(&cl[n_started]);
    n_started++;
  }
  if (n_started >= opt.clients) uv_timer_stop(t);
}

static double pct(uint64_t a, uint64_t b) { return b ? 100.0 * (double)a / (double)b : 0; }

static void report(void) {
  double win = t_window_end - t_window_start;
  uint64_t fast_deliv = 0, slow_deliv = 0, gaps = 0, dups = 0;
  uint64_t fmin = UINT64_MAX, fmax = 0;
  int fast_n = 0, starved = 0, fast_alive = 0;
  for (int i = 0; i < n_started; i++) {
    client *c = &cl[i];
    if (c->slow) {
      slow_deliv += c->deliv_window;
      continue;
    }
    if (c->state == ST_JOINED) fast_alive++;
    fast_n++;
    fast_deliv += c->deliv_window;
    gaps += c->gaps;
    dups += c->dups;
    if (c->deliv_window < fmin) fmin = c->deliv_window;
    if (c->deliv_window > fmax) fmax = c->deliv_window;
    if (c->deliv_window == 0) starved++;
  }
  if (fast_n == 0) fmin = 0;
  int sched = ps_win_end.sched_ok && ps_win_start.sched_ok;
  double cpu = !(ps_win_end.ok && ps_win_start.ok) ? -1
               : sched ? ps_win_end.cpu_s - ps_win_start.cpu_s
                       : ps_win_end.cpu_tick_s - ps_win_start.cpu_tick_s;
  double cpu_tick = ps_win_end.ok && ps_win_start.ok ? ps_win_end.cpu_tick_s - ps_win_start.cpu_tick_s : -1;
  double lg_cpu = (double)(ru_win_end.ru_utime.tv_sec - ru_win_start.ru_utime.tv_sec) +
                  (double)(ru_win_end.ru_utime.tv_usec - ru_win_start.ru_utime.tv_usec) / 1e6 +
                  (double)(ru_win_end.ru_stime.tv_sec - ru_win_start.ru_stime.tv_sec) +
                  (double)(ru_win_end.ru_stime.tv_usec - ru_win_start.ru_stime.tv_usec) / 1e6;
  printf("{\"label\":\"%s\",\"port\":%d,\"server_pid\":%d,\"clients\":%d,\"slow_clients\":%d,"
         "\"connected\":%d,\"joined\":%d,\"failed\":%d,\"connect_errors\":%d,\"closed_after_join\":%d,"
         "\"ramp_s\":%.3f,\"traffic_wait_s\":%.3f,\"warmup_s\":%.3f,\"window_s\":%.3f,",
         opt.label, opt.port, opt.server_pid, opt.clients, n_slow, n_connected, n_joined, n_failed,
         n_connect_errors, n_closed_after_join, t_ramp_done - t_start, t_traffic - t_ramp_done, opt.warmup, win);
  printf("\"deliveries\":%" PRIu64 ",\"deliveries_per_s\":%.1f,\"fast_deliveries\":%" PRIu64
         ",\"slow_deliveries\":%" PRIu64 ",\"fast_min\":%" PRIu64 ",\"fast_max\":%" PRIu64
         ",\"fast_alive\":%d,\"fast_starved\":%d,"
         "\"gaps\":%" PRIu64 ",\"dups\":%" PRIu64 ",\"deliveries_total\":%" PRIu64 ",\"acks_sent\":%" PRIu64
         ",\"pings_answered\":%" PRIu64 ",\"bad_packets\":%" PRIu64 ",",
         deliveries_window, win > 0 ? (double)deliveries_window / win : 0, fast_deliv, slow_deliv, fmin, fmax,
         fast_alive, starved, gaps, dups, deliveries_total, acks_sent, pings_answered, bad_packets);
  printf("\"lat_us\":{\"count\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%" PRIu64 ",\"p90\":%" PRIu64 ",\"p99\":%" PRIu64
         ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 ",\"negative\":%" PRIu64 "},",
         lat.count, lat.count ? lat.sum / (double)lat.count : 0, h_quantile(&lat, 0.5), h_quantile(&lat, 0.9),
         h_quantile(&lat, 0.99), h_quantile(&lat, 0.999), lat.max, lat_negative);
  printf("\"server\":{\"sampled\":%s,\"cpu_source\":\"%s\",\"cpu_s\":%.4f,\"cpu_tick_s\":%.2f,\"cpu_util\":%.3f,\"cpu_us_per_delivery\":%.4f,"
         "\"deliveries_per_cpu_s\":%.0f,"
         "\"rss_kb_before\":%ld,\"rss_kb_joined\":%ld,\"rss_kb_start\":%ld,\"rss_kb_end\":%ld,"
         "\"rss_kb_max\":%ld,\"rss_kb_max_window\":%ld,\"rss_bytes_per_conn\":%.0f,"
         "\"rss_anon_kb_before\":%ld,\"rss_anon_kb_start\":%ld,\"rss_anon_bytes_per_conn\":%.0f,"
         "\"marginal_from\":%d,\"rss_kb_marginal_from\":%ld,\"rss_anon_kb_marginal_from\":%ld,"
         "\"rss_marginal_bytes_per_conn\":%.0f,\"rss_anon_marginal_bytes_per_conn\":%.0f},",
         ps_win_start.ok ? "true" : "false", sched ? "schedstat" : "stat", cpu, cpu_tick, win > 0 && cpu >= 0 ? cpu / win : 0,
         cpu >= 0 && deliveries_window ? cpu * 1e6 / (double)deliveries_window : 0,
         cpu > 0 ? (double)deliveries_window / cpu : 0, ps_before.rss_kb, ps_joined.rss_kb, ps_win_start.rss_kb,
         ps_win_end.rss_kb, rss_max_kb, rss_max_window_kb,
         n_joined > 0 && ps_win_start.ok ? (double)(ps_win_start.rss_kb - ps_before.rss_kb) * 1024.0 / n_joined
                                          : 0,
         ps_before.rss_anon_kb, ps_win_start.rss_anon_kb,
         n_joined > 0 && ps_win_start.ok
             ? (double)(ps_win_start.rss_anon_kb - ps_before.rss_anon_kb) * 1024.0 / n_joined
             : 0,
         marginal_joined, ps_marginal.rss_kb, ps_marginal.rss_anon_kb,
         ps_marginal.ok && ps_win_start.ok
             ? per_conn(ps_win_start.rss_kb, ps_marginal.rss_kb, n_joined - marginal_joined)
             : 0,
         ps_marginal.ok && ps_win_start.ok
             ? per_conn(ps_win_start.rss_anon_kb, ps_marginal.rss_anon_kb, n_joined - marginal_joined)
             : 0);
  {
    /* Where the server's time goes: user vs kernel (utime/stime), system calls and context
     * switches per delivery, all from /proc (no tracing overhead). */
    int okp = ps_win_end.ok && ps_win_start.ok;
    double us = okp ? ps_win_end.user_s - ps_win_start.user_s : 0;
    double ks = okp ? ps_win_end.sys_s - ps_win_start.sys_s : 0;
    double d = deliveries_window ? (double)deliveries_window : 0;
    unsigned long long r = okp ? ps_win_end.syscr - ps_win_start.syscr : 0;
    unsigned long long w = okp ? ps_win_end.syscw - ps_win_start.syscw : 0;
    unsigned long long v = okp ? ps_win_end.vcsw - ps_win_start.vcsw : 0;
    unsigned long long iv = okp ? ps_win_end.ivcsw - ps_win_start.ivcsw : 0;
    printf("\"proc\":{\"ok\":%s,\"user_s\":%.2f,\"sys_s\":%.2f,\"kernel_share\":%.3f,"
           "\"io_ok\":%s,\"syscr\":%llu,\"syscw\":%llu,\"syscalls_per_delivery\":%.4f,"
           "\"syscw_per_delivery\":%.4f,\"ctxsw_vol\":%llu,\"ctxsw_invol\":%llu,"
           "\"ctxsw_per_s\":%.1f,\"ctxsw_per_delivery\":%.5f},",
           okp ? "true" : "false", us, ks, us + ks > 0 ? ks / (us + ks) : 0,
           okp && ps_win_end.io_ok ? "true" : "false", r, w, d > 0 ? (double)(r + w) / d : 0,
           d > 0 ? (double)w / d : 0, v, iv, win > 0 ? (double)(v + iv) / win : 0,
           d > 0 ? (double)(v + iv) / d : 0);
  }
  printf("\"tcp\":{\"samples\":%d,\"server_sendq_start\":%" PRIu64 ",\"server_sendq_end\":%" PRIu64
         ",\"server_sendq_max\":%" PRIu64 ",\"client_recvq_end\":%" PRIu64 ",\"client_recvq_max\":%" PRIu64
         ",\"server_socks\":%d},",
         tcp_samples, tcp_win_start.server_txq, tcp_last.server_txq, txq_max, tcp_last.client_rxq,
         client_rxq_max, tcp_last.server_socks);
  printf("\"loadgen\":{\"cpu_s\":%.3f,\"cpu_util\":%.3f,\"maxrss_kb\":%ld},", lg_cpu, win > 0 ? lg_cpu / win : 0,
         ru_win_end.ru_maxrss);
  {
    double busy = busy_win_start >= 0 && busy_win_end >= 0 ? busy_win_end - busy_win_start : -1;
    double other = busy >= 0 ? busy - lg_cpu - (cpu > 0 ? cpu : 0) : -1;
    if (other < 0 && busy >= 0) other = 0; /* tick rounding */
    double la[3] = {0, 0, 0};
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
      if (fscanf(f, "%lf %lf %lf", &la[0], &la[1], &la[2]) != 3) la[0] = la[1] = la[2] = 0;
      fclose(f);
    }
    printf("\"machine\":{\"ncpu\":%ld,\"busy_cpu_util\":%.3f,\"other_cpu_util\":%.3f,\"loadavg1\":%.2f},",
           sysconf(_SC_NPROCESSORS_ONLN), busy >= 0 && win > 0 ? busy / win : -1,
           other >= 0 && win > 0 ? other / win : -1, la[0]);
  }
  printf("\"fast_delivery_pct_of_max\":%.2f}\n", pct(fmin, fmax));
  fflush(stdout);
}

static void finish(void) {
  /* Abortive close: RST instead of FIN so that repeated runs don't pile up TIME_WAIT ports. */
  struct linger lg = {1, 0};
  for (int i = 0; i < n_started; i++) {
    client *c = &cl[i];
    if (c->closing) continue;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  exit(n_joined > 0 ? 0 : 1); /* the JSON line is printed either way */
}

static void on_tick(uv_timer_t *t) {
  (void)t;
  double now = mono_s();
  int with_tcp = (now - t_last_tcp) * 1000 >= opt.tcp_sample_ms;
  if (with_tcp) t_last_tcp = now;
  do_sample(with_tcp);
  switch (phase) {
  case PH_RAMP: {
    int resolved = n_joined + n_failed;
    double jt = opt.join_timeout > 0 ? opt.join_timeout : opt.clients / opt.ramp_per_sec + 30;
    if ((n_started >= opt.clients && resolved >= opt.clients) || now - t_start > jt) {
      t_ramp_done = now;
      if (resolved < opt.clients)
        fprintf(stderr, "loadgen: join timeout: %d of %d joined, %d failed\n", n_joined, opt.clients, n_failed);
      ps_joined = sample_proc(opt.server_pid);
      phase = PH_WAIT_TRAFFIC;
      if (!opt.quiet)
        fprintf(stderr, "loadgen: %d joined (%d failed) in %.2fs\n", n_joined, n_failed, now - t_start);
    }
    break;
  }
  case PH_WAIT_TRAFFIC:
    if (opt.wait_traffic <= 0 || deliveries_total > 0 || now - t_ramp_done >= opt.wait_traffic) {
      if (opt.wait_traffic > 0 && deliveries_total == 0)
        fprintf(stderr, "loadgen: no delivery within %.1fs of joining\n", opt.wait_traffic);
      t_traffic = now;
      phase = PH_WARMUP;
      if (!opt.quiet) fprintf(stderr, "loadgen: warmup %.1fs\n", opt.warmup);
    }
    break;
  case PH_WARMUP:
    if (now - t_traffic >= opt.warmup) {
      phase = PH_MEASURE;
      ps_win_start = sample_proc(opt.server_pid);
      rss_max_window_kb = ps_win_start.rss_kb;
      tcp_win_start = sample_tcp(opt.port);
      getrusage(RUSAGE_SELF, &ru_win_start);
      busy_win_start = sys_busy_s();
      t_window_start = mono_s();
      measuring = 1;
      if (opt.window_cmd) {
        /* e.g. perf stat over exactly the window; detached, the caller collects it */
        pid_t k = fork();
        if (k == 0) {
          /* not the clients' sockets (they must close when loadgen exits), not our stdout */
          int dn = open("/dev/null", O_WRONLY);
          if (dn >= 0) dup2(dn, 1);
          for (int fd = 3; fd < 65536; fd++) close(fd);
          setsid();
          execl("/bin/sh", "sh", "-c", opt.window_cmd, (char *)NULL);
          _exit(127);
        }
      }
    }
    break;
  case PH_MEASURE:
    if (now - t_window_start >= opt.duration) {
      measuring = 0;
      t_window_end = mono_s();
      ps_win_end = sample_proc(opt.server_pid);
      if (ps_win_end.ok && ps_win_end.rss_kb > rss_max_window_kb) rss_max_window_kb = ps_win_end.rss_kb;
      if (ps_win_end.ok && ps_win_end.rss_kb > rss_max_kb) rss_max_kb = ps_win_end.rss_kb;
      getrusage(RUSAGE_SELF, &ru_win_end);
      busy_win_end = sys_busy_s();
      do_sample(1);
      phase = PH_DONE;
      report();
      finish();
    }
    break;
  default:
    break;
  }
}

/* ------------------------------------------------------------------ main */

static void usage(FILE *f) {
  fprintf(f,
          "usage: loadgen [options]\n"
          "Socket.IO v5 / Engine.IO v4 WebSocket load generator (prints one JSON line).\n"
          "  --host H            server address (IPv4, default 127.0.0.1)\n"
          "  --port P            server port (default 3000)\n"
          "  --clients N         connections to open (default 100)\n"
          "  --ns PATH           Socket.IO namespace to join (default /feed)\n"
          "  --topic T           topic to subscribe to (default prices)\n"
          "  --duration S        measurement window in seconds (default 10)\n"
          "  --warmup S          seconds between all-joined and the window (default 2)\n"
          "  --slow-fraction F   fraction of clients that stop reading after joining (default 0)\n"
          "  --ack               ack AT_LEAST_ONCE deliveries (42/ns,[\"ack\",{topic,messageId}])\n"
          "  --server-pid PID    sample this process's CPU time and RSS from /proc\n"
          "  --ramp-per-sec R    connections opened per second (default 1000)\n"
          "  --join-timeout S    give up waiting for joins after S s (default clients/ramp + 30)\n"
"  --wait-traffic S    after joining, wait up to S s for the first delivery (default 0: no wait)\n"
          "  --sample-ms MS      /proc/PID sampling period (default 200)\n"
          "  --marginal-from K   also sample the server's RSS when K clients have joined: the\n"
          "                      marginal bytes per connection over the rest (default 500; 0: off)\n"
          "  --tcp-sample-ms MS  /proc/net/tcp sampling period (default 1000)\n"
          "  --label TEXT        copied into the JSON output\n"
          "  --tls               connect with TLS (no certificate verification)\n"
          "  --window-cmd CMD    run `sh -c CMD` (detached) when the measurement window starts\n"
          "  --quiet             less stderr\n"
          "  --help\n"
          "Latency = receive wall clock - payload \"ts\" (us if > 1e14, else ms). Only non-slow\n"
          "clients, only inside the window. cpu_us_per_delivery = server CPU time in the window /\n"
          "deliveries received in the window (all clients).\n");
}

int main(int argc, char **argv) {
  static const struct option lo[] = {
      {"host", required_argument, 0, 'H'},         {"port", required_argument, 0, 'p'},
      {"clients", required_argument, 0, 'c'},      {"ns", required_argument, 0, 'n'},
      {"topic", required_argument, 0, 't'},        {"duration", required_argument, 0, 'd'},
      {"warmup", required_argument, 0, 'w'},       {"slow-fraction", required_argument, 0, 's'},
      {"ack", no_argument, 0, 'a'},                {"server-pid", required_argument, 0, 'P'},
      {"ramp-per-sec", required_argument, 0, 'r'}, {"join-timeout", required_argument, 0, 'J'},
      {"sample-ms", required_argument, 0, 'S'},    {"tcp-sample-ms", required_argument, 0, 'T'},
      {"wait-traffic", required_argument, 0, 'W'}, {"label", required_argument, 0, 'L'},
      {"quiet", no_argument, 0, 'q'},              {"tls", no_argument, 0, 'X'},
      {"window-cmd", required_argument, 0, 'C'},   {"help", no_argument, 0, 'h'},
      {"marginal-from", required_argument, 0, 'M'},
      {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (ch) {
    case 'H': opt.host = optarg; break;
    case 'p': opt.port = atoi(optarg); break;
    case 'c': opt.clients = atoi(optarg); break;
    case 'n': opt.ns = optarg; break;
    case 't': opt.topic = optarg; break;
    case 'd': opt.duration = atof(optarg); break;
    case 'w': opt.warmup = atof(optarg); break;
    case 's': opt.slow_fraction = atof(optarg); break;
    case 'a': opt.ack = 1; break;
    case 'P': opt.server_pid = atoi(optarg); break;
    case 'r': opt.ramp_per_sec = atof(optarg); break;
    case 'J': opt.join_timeout = atof(optarg); break;
    case 'S': opt.sample_ms = atoi(optarg); break;
    case 'T': opt.tcp_sample_ms = atoi(optarg); break;
    case 'W': opt.wait_traffic = atof(optarg); break;
    case 'L': opt.label = optarg; break;
    case 'q': opt.quiet++; break;
    case 'X': opt.tls = 1; break;
    case 'C': opt.window_cmd = optarg; break;
    case 'M': opt.marginal_from = atoi(optarg); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) {
    usage(stderr);
    return 2;
  }
  if (opt.clients <= 0 || opt.port <= 0 || opt.port > 65535 || opt.ramp_per_sec <= 0 || opt.duration <= 0 ||
      opt.warmup < 0 || opt.slow_fraction < 0 || opt.slow_fraction > 1 || opt.sample_ms <= 0)
    die("invalid option value (see --help)");
  if (opt.ns[0] != '/') die("--ns must start with '/'");
  if (strlen(opt.topic) > 200 || strlen(opt.ns) > 200 || strchr(opt.topic, '"') || strchr(opt.label, '"'))
    die("topic/ns too long or contains a quote");
  if (uv_ip4_addr(opt.host, opt.port, &server_addr) != 0) die("--host must be an IPv4 address");

  if (opt.tls) {
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx) die("cannot create a TLS context");
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_RELEASE_BUFFERS);
  }
  /* A server that closes a connection (a ping timeout on an overloaded machine) must cost
   * that client, not the whole run: libuv writes with write(2), which raises SIGPIPE. */
  signal(SIGPIPE, SIG_IGN);
  clk_tck = sysconf(_SC_CLK_TCK);
  /* fds: one per client plus slack */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.clients + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)opt.clients + 64)
      fprintf(stderr, "loadgen: warning: RLIMIT_NOFILE %lu < clients %d\n", (unsigned long)rl.rlim_cur,
              opt.clients);
  }

  ns_is_root = strcmp(opt.ns, "/") == 0;
  ns_len = strlen(opt.ns);
  {
    char b[512];
    int n = ns_is_root ? snprintf(b, sizeof b, "40") : snprintf(b, sizeof b, "40%s,", opt.ns);
    connect_pkt = strdup(b);
    connect_len = (size_t)n;
    n = ns_is_root ? snprintf(b, sizeof b, "42[\"subscribe\",{\"topic\":\"%s\"}]", opt.topic)
                   : snprintf(b, sizeof b, "42%s,[\"subscribe\",{\"topic\":\"%s\"}]", opt.ns, opt.topic);
    subscribe_pkt = strdup(b);
    subscribe_len = (size_t)n;
    topic_prefix_len = (size_t)snprintf(topic_prefix, sizeof topic_prefix, "[\"%s\",", opt.topic);
  }
  rng_state ^= (uint64_t)wall_us() * 2654435761u ^ (uint64_t)getpid();

  cl = calloc((size_t)opt.clients, sizeof *cl);
  if (!cl) die("out of memory");
  for (int i = 0; i < opt.clients; i++) {
    cl[i].idx = i;
    /* spread slow clients evenly: client i is slow when floor((i+1)f) > floor(i f) */
    if (opt.slow_fraction > 0 && floor((i + 1) * opt.slow_fraction) > floor(i * opt.slow_fraction)) {
      cl[i].slow = 1;
      n_slow++;
    }
  }

  loop = uv_default_loop();
  ps_before = sample_proc(opt.server_pid);
  rss_max_kb = ps_before.rss_kb;
  if (opt.server_pid > 0 && !ps_before.ok) fprintf(stderr, "loadgen: warning: cannot read /proc/%d\n", opt.server_pid);
  t_start = mono_s();
  t_last_tcp = t_start;
  uv_timer_init(loop, &ramp_timer);
  uv_timer_init(loop, &tick_timer);
  uv_timer_start(&ramp_timer, on_ramp, 0, 2);
  uv_timer_start(&tick_timer, on_tick, (uint64_t)opt.sample_ms, (uint64_t)opt.sample_ms);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
