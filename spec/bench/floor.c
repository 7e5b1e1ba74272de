/* floor.c - the kernel floor of a fan-out on this machine, for `make bench`.
 *
 * A deliberately minimal server that makes the same system calls a perfect gateway would make
 * and nothing else: it accepts the load generator's WebSocket connections
 * (/socket.io/?EIO=4&transport=websocket), answers the Engine.IO open and the Socket.IO
 * CONNECT of one namespace, takes the subscribe, and then writes the producer's frames
 *   42/feed,["prices",{"ts":"<wall-clock us>","seq":n,"sym":"S<n%10>","data":"xxx..."}]
 * to every subscribed connection: each frame built once, one writev per connection per
 * flush, with an optional batching window exactly like Sluice's flushIntervalMs (the frames of
 * one window go out together). No queues, no policies, no JSON parsing, no timers per client,
 * no pings: what it spends per delivered message is what the kernel charges for the writes
 * (the TCP send path, loopback delivery to the reader, waking it), plus a few hundred
 * instructions. Sluice's CPU per delivery divided by this floor, in the same run, says how
 * much of Sluice's cost is its own; a target below the floor cannot be met by any server on
 * this machine with this many writes.
 *
 * Environment (as spec/bench/sluice-bench.lua): PORT (3000), RATE (1000 msg/s), SIZE (100 B
 * payload), TICK_MS (10: the producer's timer; messages due are published per tick, at most
 * two ticks' worth at once), FLUSH_MS (0: write at the end of each tick; >0: a window opened
 * by the first frame, closed FLUSH_MS later), PRODUCER_DELAY_MS (0). Linux only (epoll,
 * timerfd). A connection whose socket buffer is full keeps the rest in its own buffer (bounded
 * at 8 MiB, then closed and counted on stderr), so no frame is torn.
 */
#define _GNU_SOURCE 1
#include <openssl/evp.h>
#include <openssl/sha.h>

#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_FRAMES 64          /* frames in one window (a window this full is flushed early) */
#define MAX_PENDING (8u << 20) /* a connection's own backlog before it is closed */

typedef struct conn {
  int fd;
  int state; /* 0 = HTTP request, 1 = WebSocket, waiting for CONNECT, 2 = joined, 3 = subscribed */
  char in[4096];
  size_t inlen;
  char *pend; /* bytes the kernel did not take yet */
  size_t plen, pcap;
  struct conn *next_sub, *prev_sub; /* the subscribed list */
  struct conn *next_dead;           /* closed during this batch of events, freed after it */
  int dead;
} conn;

static conn head = {.next_sub = &head, .prev_sub = &head};
static conn *dead; /* closed in this batch of events: freed once the batch is handled */
static int ep;
static long frames_written, writes, partials, closed_full;

static long env_num(const char *name, long def) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : def;
}

static uint64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Closes c at once; its memory waits for the end of the batch of events, which may still
 * name it (a flush can close a connection whose hang-up is later in the same batch). */
static void conn_close(conn *c) {
  if (c->dead) return;
  if (c->state == 3) {
    c->prev_sub->next_sub = c->next_sub;
    c->next_sub->prev_sub = c->prev_sub;
  }
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  c->dead = 1;
  c->next_dead = dead;
  dead = c;
}

static void free_dead(void) {
  while (dead) {
    conn *c = dead;
    dead = c->next_dead;
    free(c->pend);
    free(c);
  }
}

/* Appends to the connection's own backlog; false when it would pass MAX_PENDING. */
static int pend_add(conn *c, const char *p, size_t n) {
  if (c->plen + n > MAX_PENDING) return 0;
  if (c->plen + n > c->pcap) {
    size_t cap = c->pcap ? c->pcap : 4096;
    while (cap < c->plen + n) cap *= 2;
    char *q = realloc(c->pend, cap);
    if (!q) return 0;
    c->pend = q;
    c->pcap = cap;
  }
  memcpy(c->pend + c->plen, p, n);
  c->plen += n;
  return 1;
}

/* Writes iov[0..n) (after any backlog) with one writev; what the kernel does not take goes to
 * the backlog and EPOLLOUT is asked for. False when the connection had to be closed. */
static int conn_send(conn *c, struct iovec *iov, int n) {
  if (c->plen) { /* behind: keep the order, add to the backlog */
    for (int i = 0; i < n; i++)
      if (!pend_add(c, iov[i].iov_base, iov[i].iov_len)) return 0;
    return 1;
  }
  size_t total = 0;
  for (int i = 0; i < n; i++) total += iov[i].iov_len;
  ssize_t w = writev(c->fd, iov, n);
  writes++;
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) return 0;
    w = 0;
  }
  if ((size_t)w == total) return 1;
  partials++;
  size_t skip = (size_t)w;
  for (int i = 0; i < n; i++) {
    if (skip >= iov[i].iov_len) {
      skip -= iov[i].iov_len;
      continue;
    }
    if (!pend_add(c, (char *)iov[i].iov_base + skip, iov[i].iov_len - skip)) return 0;
    skip = 0;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  return 1;
}

static void drain_backlog(conn *c) {
  ssize_t w = write(c->fd, c->pend, c->plen);
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK) conn_close(c);
    return;
  }
  memmove(c->pend, c->pend + w, c->plen - (size_t)w);
  c->plen -= (size_t)w;
  if (!c->plen) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  }
}

/* An unmasked server text frame header for n payload bytes into h; returns its length. */
static size_t ws_header(unsigned char *h, size_t n) {
  h[0] = 0x81;
  if (n < 126) {
    h[1] = (unsigned char)n;
    return 2;
  }
  h[1] = 126;
  h[2] = (unsigned char)(n >> 8);
  h[3] = (unsigned char)n;
  return 4;
}

static int send_text(conn *c, const char *s) {
  unsigned char h[4];
  size_t n = strlen(s);
  struct iovec iov[2] = {{h, ws_header(h, n)}, {(void *)s, n}};
  return conn_send(c, iov, 2);
}

/* The HTTP upgrade: 101 with Sec-WebSocket-Accept, then the Engine.IO open packet. */
static int on_http(conn *c) {
  char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
  if (!end) return c->inlen < sizeof c->in;
  *end = 0;
  char *k = strcasestr(c->in, "\r\nSec-WebSocket-Key:");
  if (!k) return 0;
  k += 20;
  while (*k == ' ') k++;
  char key[128];
  size_t kl = strcspn(k, "\r\n ");
  if (kl > 60) return 0;
  memcpy(key, k, kl);
  strcpy(key + kl, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
  unsigned char sha[SHA_DIGEST_LENGTH];
  SHA1((unsigned char *)key, strlen(key), sha);
  unsigned char acc[64];
  EVP_EncodeBlock(acc, sha, SHA_DIGEST_LENGTH);
  char resp[256];
  int n =
      snprintf(resp, sizeof resp,
               "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n",
               acc);
  struct iovec iov = {resp, (size_t)n};
  if (!conn_send(c, &iov, 1)) return 0;
  size_t used = (size_t)(end + 4 - c->in);
  memmove(c->in, c->in + used, c->inlen - used);
  c->inlen -= used;
  c->state = 1;
  char open[160];
  snprintf(open, sizeof open,
           "0{\"sid\":\"floor%d\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":600000,"
           "\"maxPayload\":1000000}",
           c->fd);
  return send_text(c, open);
}

/* One client text message (unmasked). */
static int on_text(conn *c, const char *p, size_t n) {
  if (c->state == 1 && n >= 2 && p[0] == '4' && p[1] == '0') {
    const char *comma = memchr(p, ',', n);
    char reply[160];
    snprintf(reply, sizeof reply, "40%.*s{\"sid\":\"s%d\"}", comma ? (int)(comma - p - 1) : 0,
             p + 2, c->fd);
    c->state = 2;
    return send_text(c, reply);
  }
  if (c->state == 2 && n >= 2 && p[0] == '4' && p[1] == '2' && memmem(p, n, "\"subscribe\"", 11)) {
    c->state = 3;
    c->prev_sub = head.prev_sub;
    c->next_sub = &head;
    head.prev_sub->next_sub = c;
    head.prev_sub = c;
  }
  return 1; /* pongs and anything else: ignored */
}

/* Client WebSocket frames (masked, small: the load generator's control traffic). */
static int on_frames(conn *c) {
  for (;;) {
    unsigned char *b = (unsigned char *)c->in;
    if (c->inlen < 2) return 1;
    size_t len = b[1] & 0x7f, off = 2;
    if (len == 126) {
      if (c->inlen < 4) return 1;
      len = (size_t)b[2] << 8 | b[3];
      off = 4;
    } else if (len == 127) {
      return 0;
    }
    if (!(b[1] & 0x80)) return 0; /* clients mask */
    if (c->inlen < off + 4 + len) return c->inlen < sizeof c->in;
    unsigned char *m = b + off, *p = b + off + 4;
    for (size_t i = 0; i < len; i++) p[i] ^= m[i & 3];
    int op = b[0] & 0x0f;
    if (op == 8) return 0;
    if (op == 1 && !on_text(c, (char *)p, len)) return 0;
    size_t used = off + 4 + len;
    memmove(c->in, c->in + used, c->inlen - used);
    c->inlen -= used;
  }
}

static void on_readable(conn *c) {
  for (;;) {
    ssize_t r = read(c->fd, c->in + c->inlen, sizeof c->in - c->inlen);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
      conn_close(c);
      return;
    }
    if (r < 0) return;
    c->inlen += (size_t)r;
    int ok = c->state == 0 ? on_http(c) : 1;
    if (ok && c->state >= 1) ok = on_frames(c);
    if (!ok) {
      conn_close(c);
      return;
    }
  }
}

/* ---- the producer and the window ---- */

static char *frames[MAX_FRAMES];
static size_t frame_len[MAX_FRAMES];
static int nframes;

static void flush_window(void) {
  if (!nframes) return;
  struct iovec iov[MAX_FRAMES];
  for (int i = 0; i < nframes; i++) iov[i] = (struct iovec){frames[i], frame_len[i]};
  for (conn *c = head.next_sub, *next; c != &head; c = next) {
    next = c->next_sub;
    if (!conn_send(c, iov, nframes)) {
      closed_full++;
      conn_close(c);
    } else {
      frames_written += nframes;
    }
  }
  for (int i = 0; i < nframes; i++) free(frames[i]);
  nframes = 0;
}

static void publish(long seq, const char *filler) {
  char payload[4096];
  int pl = snprintf(
      payload, sizeof payload,
      "42/feed,[\"prices\",{\"ts\":\"%llu\",\"seq\":%ld,\"sym\":\"S%ld\",\"data\":\"%s\"}]",
      (unsigned long long)wall_us(), seq, seq % 10, filler);
  unsigned char h[4];
  size_t hl = ws_header(h, (size_t)pl);
  char *f = malloc(hl + (size_t)pl);
  if (!f) return;
  memcpy(f, h, hl);
  memcpy(f + hl, payload, (size_t)pl);
  if (nframes == MAX_FRAMES) flush_window();
  frames[nframes] = f;
  frame_len[nframes++] = hl + (size_t)pl;
}

int main(void) {
  long port = env_num("PORT", 3000), rate = env_num("RATE", 1000), size = env_num("SIZE", 100);
  long tick = env_num("TICK_MS", 10), window = env_num("FLUSH_MS", 0),
       delay = env_num("PRODUCER_DELAY_MS", 0);
  if (tick < 1) tick = 1;
  signal(SIGPIPE, SIG_IGN); /* a write to a client that left fails with EPIPE instead */
  int overhead = snprintf(NULL, 0, "{\"ts\":\"%d\",\"seq\":%d,\"sym\":\"S0\",\"data\":\"\"}",
                          1732740000, 1000000) +
                 6;
  long fl = size - overhead > 0 ? size - overhead : 0;
  if (fl > 3000) fl = 3000;
  char *filler = malloc((size_t)fl + 1);
  memset(filler, 'x', (size_t)fl);
  filler[fl] = 0;

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(0x7f000001)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 4096)) {
    perror("floor: listen");
    return 1;
  }
  ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  int tf = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct itimerspec its = {.it_interval = {tick / 1000, (tick % 1000) * 1000000},
                           .it_value = {(delay + tick) / 1000, ((delay + tick) % 1000) * 1000000}};
  if (rate > 0) timerfd_settime(tf, 0, &its, NULL);
  static conn timer_tag;
  ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &timer_tag};
  epoll_ctl(ep, EPOLL_CTL_ADD, tf, &ev);
  printf("listening %ld\n", port);
  fflush(stdout);

  long seq = 0, sent = 0;
  uint64_t t0 = 0, window_open = 0;
  long cap = rate * tick * 2 / 1000 > 1 ? rate * tick * 2 / 1000 : 1;
  struct epoll_event evs[256];
  for (;;) {
    int timeout = -1;
    if (window > 0 && nframes) {
      long left = (long)(window_open + (uint64_t)window) - (long)mono_ms();
      timeout = left > 0 ? (int)left : 0;
    }
    int n = epoll_wait(ep, evs, 256, timeout);
    for (int i = 0; i < n; i++) {
      conn *c = evs[i].data.ptr;
      if (!c) { /* accept everything waiting */
        int fd;
        while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          conn *nc = calloc(1, sizeof *nc);
          nc->fd = fd;
          struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = nc};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
        }
      } else if (c == &timer_tag) {
        uint64_t exp;
        if (read(tf, &exp, sizeof exp) < 0) continue;
        uint64_t now = mono_ms();
        if (!t0) t0 = now;
        long due = (long)((double)rate * (double)(now - t0) / 1000.0);
        if (due - sent > cap) sent = due - cap;
        long k = due - sent;
        sent = due;
        if (k > 0 && !nframes) window_open = now;
        for (long j = 0; j < k; j++) publish(++seq, filler);
        if (window <= 0) flush_window();
      } else if (!c->dead) {
        if ((evs[i].events & EPOLLOUT) && c->plen)
          drain_backlog(c);
        else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
          on_readable(c);
      }
    }
    if (window > 0 && nframes && mono_ms() >= window_open + (uint64_t)window) flush_window();
    free_dead();
  }
}
