/* redis_link.c - one Redis connection over hiredis's async API (redis_link.h).
 *
 * States: DOWN (waiting for the retry timer), CONNECTING (TCP connect, then AUTH/SELECT),
 * UP, and a link being freed. One uv_timer serves all of them: the retry delay while DOWN,
 * the connect deadline while CONNECTING, the reply deadline check while UP.
 *
 * hiredis's rules this file follows: the disconnect callback runs only for a context that
 * was connected, after every pending callback got a NULL reply, and the context is freed by
 * hiredis right after; a context whose connect failed is freed by hiredis after the connect
 * callback; redisAsyncFree inside a reply callback is deferred until that callback returns.
 * The event glue is ours, not hiredis's adapters/libuv.h: that one drops a poll error
 * (libuv reports a refused connect as status UV_EBADF and stops the handle), so a refused
 * connect would hang until the connect deadline. Ours hands an error to hiredis's read or
 * write handler, which reads the socket error and reports it.
 * Each command carries a small record (callback, user data) from a per-link free list;
 * records of SUBSCRIBE commands stay registered with hiredis until the context goes. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/async.h>

#include "redis_link.h"
#include "sl_util.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000
#define CONNECT_TIMEOUT_MS 5000
#define LOG_EVERY_MS 30000

enum { ST_DOWN = 0, ST_CONNECTING, ST_UP, ST_CLOSED };

typedef struct cmdrec {
  struct cmdrec *next, *prev; /* in link->live, or next in link->freel */
  sl_redis_link *link;
  sl_redis_cb cb;
  void *ud;
  bool sub;    /* SUBSCRIBE/PSUBSCRIBE: called per message */
  bool called; /* got its NULL reply (a subscription may be registered twice) */
} cmdrec;

struct sl_redis_link {
  uv_loop_t *loop;
  sl_redis_url url;
  char *name;
  sl_redis_link_ops ops;
  void *ud;
  redisAsyncContext *ac;
  int state;
  uv_timer_t timer;
  uint64_t retry_ms;   /* next retry delay */
  uint64_t timeout_ms; /* reply deadline, 0 = none */
  uint64_t progress;   /* loop time of the last reply, or of a send with nothing pending */
  int in_cb;           /* depth inside our hiredis callbacks */
  bool ever_up;
  bool dropping;    /* the context is being freed: commands fail as when down */
  int handshake;    /* replies still expected for AUTH/SELECT */
  char reason[256]; /* why the current context is being dropped */
  uint64_t fail_streak, last_fail_log;
  cmdrec live; /* sentinel of records registered with the current context */
  cmdrec *freel;
  sl_redis_link_stats st;
  sl_sbuf fmt; /* the RESP text of the command being sent (reused) */
};

static void schedule_retry(sl_redis_link *l);
static void start_connect(sl_redis_link *l);

/* ---- event glue (hiredis <-> uv_poll) ---------------------------------------------------- */

typedef struct evglue {
  redisAsyncContext *ac; /* NULL once hiredis cleaned up */
  uv_poll_t poll;
  int events;
} evglue;

static void glue_cb(uv_poll_t *h, int status, int events) {
  evglue *g = h->data;
  if (status < 0) {
    /* an error on the socket: let hiredis find it (connect: in the write path) */
    events = g->events ? g->events : UV_READABLE;
  }
  if (g->ac && (events & UV_READABLE)) redisAsyncHandleRead(g->ac);
  if (g->ac && (events & UV_WRITABLE)) redisAsyncHandleWrite(g->ac);
}

static void glue_set(evglue *g, int ev) {
  g->events = ev;
  if (ev)
    uv_poll_start(&g->poll, ev, glue_cb);
  else
    uv_poll_stop(&g->poll);
}
static void glue_add_read(void *p) { glue_set(p, ((evglue *)p)->events | UV_READABLE); }
static void glue_del_read(void *p) { glue_set(p, ((evglue *)p)->events & ~UV_READABLE); }
static void glue_add_write(void *p) { glue_set(p, ((evglue *)p)->events | UV_WRITABLE); }
static void glue_del_write(void *p) { glue_set(p, ((evglue *)p)->events & ~UV_WRITABLE); }
static void glue_closed(uv_handle_t *h) { free(h->data); }
static void glue_cleanup(void *p) {
  evglue *g = p;
  g->ac = NULL;
  uv_close((uv_handle_t *)&g->poll, glue_closed);
}

/* Watch ac's socket on loop. Returns 0 or -1 (ac untouched). */
static int glue_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  evglue *g = sl_xcalloc(1, sizeof *g);
  if (uv_poll_init(loop, &g->poll, ac->c.fd) != 0) {
    free(g);
    return -1;
  }
  g->ac = ac;
  g->poll.data = g;
  ac->ev.data = g;
  ac->ev.addRead = glue_add_read;
  ac->ev.delRead = glue_del_read;
  ac->ev.addWrite = glue_add_write;
  ac->ev.delWrite = glue_del_write;
  ac->ev.cleanup = glue_cleanup;
  return 0;
}

/* ---- URLs ------------------------------------------------------------------------------ */

static int hexv(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* s[0..n) percent-decoded into a new string, or NULL on a bad escape or an encoded NUL. */
static char *pct_decode(const char *s, size_t n) {
  char *o = sl_xmalloc(n + 1), *p = o;
  for (size_t i = 0; i < n; i++) {
    if (s[i] != '%') {
      *p++ = s[i];
      continue;
    }
    int h = i + 2 < n ? hexv((unsigned char)s[i + 1]) : -1;
    int lo = i + 2 < n ? hexv((unsigned char)s[i + 2]) : -1;
    if (h < 0 || lo < 0 || (h == 0 && lo == 0)) {
      free(o);
      return NULL;
    }
    *p++ = (char)(h * 16 + lo);
    i += 2;
  }
  *p = 0;
  return o;
}

static int url_err(sl_redis_url *u, char *err, size_t errlen, const char *url, const char *why) {
  sl_redis_url_free(u);
  snprintf(err, errlen, "invalid Redis URL \"%s\": %s", url, why);
  return SL_EINVAL;
}

static char *env_nonempty(const char *k) {
  const char *v = getenv(k);
  return v && v[0] ? sl_xstrdup(v) : NULL;
}

/* sl_redis_url_parse: see redis_link.h. */
int sl_redis_url_parse(const char *url, sl_redis_url *u, char *err, size_t errlen) {
  memset(u, 0, sizeof *u);
  if (!url) return url_err(u, err, errlen, "", "missing");
  if (strncasecmp(url, "rediss://", 9) == 0)
    return url_err(u, err, errlen, url, "TLS (rediss://) is not supported; use redis://");
  if (strncasecmp(url, "redis://", 8) != 0)
    return url_err(u, err, errlen, url, "must start with redis://");
  const char *p = url + 8;
  if (strpbrk(p, "?#")) return url_err(u, err, errlen, url, "query strings are not supported");
  const char *end = p + strlen(p);
  const char *slash = memchr(p, '/', (size_t)(end - p));
  const char *auth_end = NULL;
  for (const char *q = p; q < (slash ? slash : end); q++)
    if (*q == '@') auth_end = q; /* the last '@' before the path */
  if (auth_end) {
    const char *colon = memchr(p, ':', (size_t)(auth_end - p));
    if (colon) {
      if (colon > p && !(u->user = pct_decode(p, (size_t)(colon - p))))
        return url_err(u, err, errlen, url, "bad %-escape in the user name");
      if (!(u->pass = pct_decode(colon + 1, (size_t)(auth_end - colon - 1))))
        return url_err(u, err, errlen, url, "bad %-escape in the password");
      if (!u->pass[0]) {
        free(u->pass);
        u->pass = NULL;
      }
    } else if (auth_end > p) {
      if (!(u->user = pct_decode(p, (size_t)(auth_end - p))))
        return url_err(u, err, errlen, url, "bad %-escape in the user name");
    }
    p = auth_end + 1;
  }
  const char *hend = slash ? slash : end, *portp = NULL;
  const char *hs = p, *he;
  if (*p == '[') {
    const char *rb = memchr(p, ']', (size_t)(hend - p));
    if (!rb) return url_err(u, err, errlen, url, "unterminated [IPv6] host");
    hs = p + 1;
    he = rb;
    if (rb + 1 < hend) {
      if (rb[1] != ':') return url_err(u, err, errlen, url, "junk after the [IPv6] host");
      portp = rb + 2;
    }
  } else {
    const char *colon = memchr(p, ':', (size_t)(hend - p));
    he = colon ? colon : hend;
    if (colon) portp = colon + 1;
  }
  if (he == hs) return url_err(u, err, errlen, url, "the host is empty");
  for (const char *q = hs; q < he; q++)
    if (!isalnum((unsigned char)*q) && !strchr(".-_:", *q))
      return url_err(u, err, errlen, url, "the host has an invalid character");
  u->host = sl_xstrndup(hs, (size_t)(he - hs));
  u->port = 6379;
  if (portp) {
    long v = 0;
    if (portp == hend) return url_err(u, err, errlen, url, "the port is empty");
    for (const char *q = portp; q < hend; q++) {
      if (!isdigit((unsigned char)*q) || v > 65535)
        return url_err(u, err, errlen, url, "the port must be a number in 1..65535");
      v = v * 10 + (*q - '0');
    }
    if (v < 1 || v > 65535)
      return url_err(u, err, errlen, url, "the port must be a number in 1..65535");
    u->port = (int)v;
  }
  if (slash && slash + 1 < end) {
    long v = 0;
    for (const char *q = slash + 1; q < end; q++) {
      if (!isdigit((unsigned char)*q) || v > 1000000)
        return url_err(u, err, errlen, url, "the database (/db) must be a number in 0..1000000");
      v = v * 10 + (*q - '0');
    }
    if (v > 1000000)
      return url_err(u, err, errlen, url, "the database (/db) must be a number in 0..1000000");
    u->db = (int)v;
  }
  if (!u->pass) u->pass = env_nonempty("SLUICE_REDIS_PASSWORD");
  if (!u->user && u->pass) u->user = env_nonempty("SLUICE_REDIS_USERNAME");
  if (u->user && !u->pass)
    return url_err(u, err, errlen, url,
                   "a user name needs a password (in the URL or SLUICE_REDIS_PASSWORD)");
  return 0;
}

/* sl_redis_url_free: see redis_link.h. */
void sl_redis_url_free(sl_redis_url *u) {
  if (!u) return;
  free(u->host);
  free(u->user);
  free(u->pass);
  memset(u, 0, sizeof *u);
}

static char *dupn(const char *s) { return s ? sl_xstrdup(s) : NULL; }
static bool streq(const char *a, const char *b) { return a == b || (a && b && strcmp(a, b) == 0); }

/* sl_redis_url_copy: see redis_link.h. */
void sl_redis_url_copy(sl_redis_url *d, const sl_redis_url *s) {
  d->host = dupn(s->host);
  d->port = s->port;
  d->db = s->db;
  d->user = dupn(s->user);
  d->pass = dupn(s->pass);
}

/* sl_redis_url_equal: see redis_link.h. */
bool sl_redis_url_equal(const sl_redis_url *a, const sl_redis_url *b) {
  return streq(a->host, b->host) && a->port == b->port && a->db == b->db &&
         streq(a->user, b->user) && streq(a->pass, b->pass);
}

/* ---- command records ------------------------------------------------------------------- */

static cmdrec *rec_get(sl_redis_link *l, sl_redis_cb cb, void *ud) {
  cmdrec *r = l->freel;
  if (r)
    l->freel = r->next;
  else
    r = sl_xmalloc(sizeof *r);
  memset(r, 0, sizeof *r);
  r->link = l;
  r->cb = cb;
  r->ud = ud;
  r->next = l->live.next;
  r->prev = &l->live;
  l->live.next->prev = r;
  l->live.next = r;
  return r;
}

static void rec_put(sl_redis_link *l, cmdrec *r) {
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->next = l->freel;
  l->freel = r;
}

/* Every record of the context that is gone back to the free list. */
static void rec_reclaim(sl_redis_link *l) {
  while (l->live.next != &l->live) rec_put(l, l->live.next);
}

static void rec_free_all(sl_redis_link *l) {
  rec_reclaim(l);
  while (l->freel) {
    cmdrec *n = l->freel->next;
    free(l->freel);
    l->freel = n;
  }
}

/* ---- state ----------------------------------------------------------------------------- */

static void timer_closed(uv_handle_t *h) {
  sl_redis_link *l = h->data;
  rec_free_all(l);
  sl_redis_url_free(&l->url);
  sl_sbuf_free(&l->fmt);
  free(l->name);
  free(l);
}

/* The context is gone (hiredis frees it after we return): back to DOWN, tell the owner. */
static void context_gone(sl_redis_link *l, const char *reason) {
  l->ac = NULL;
  l->dropping = false;
  rec_reclaim(l);
  l->st.pending = 0;
  l->handshake = 0;
  if (l->state == ST_CLOSED) return;
  bool was_up = l->state == ST_UP;
  l->state = ST_DOWN;
  l->st.up = false;
  if (was_up) {
    l->st.drops++;
    l->fail_streak = 0;
    l->last_fail_log = sl_now_ms();
    sl_log_warn("redis %s (%s:%d) down: %s; reconnecting", l->name, l->url.host, l->url.port,
                reason);
    if (l->ops.on_down) l->ops.on_down(l, l->ud, reason);
  } else {
    l->st.failures++;
    uint64_t now = sl_now_ms();
    if (l->fail_streak++ == 0 || now - l->last_fail_log >= LOG_EVERY_MS) {
      sl_log_warn("redis %s (%s:%d) unreachable: %s (%llu failed attempt(s); retrying with "
                  "backoff up to %d ms)",
                  l->name, l->url.host, l->url.port, reason, (unsigned long long)l->fail_streak,
                  RETRY_MAX_MS);
      l->last_fail_log = now;
    }
  }
  schedule_retry(l);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  sl_redis_link *l = ac->data;
  if (!l) return;
  char why[256];
  if (l->reason[0])
    snprintf(why, sizeof why, "%s", l->reason);
  else if (status != REDIS_OK && ac->errstr[0])
    snprintf(why, sizeof why, "%s", ac->errstr);
  else
    snprintf(why, sizeof why, "connection closed");
  context_gone(l, why);
}

/* Drop the current context for reason (it is freed now, or when the callback we are in
 * returns); the disconnect callback (connected) or we (not yet connected) finish. */
static void drop(sl_redis_link *l, const char *reason) {
  redisAsyncContext *ac = l->ac;
  if (!ac) return;
  snprintf(l->reason, sizeof l->reason, "%s", reason);
  l->dropping = true;
  bool connected = (ac->c.flags & REDIS_CONNECTED) != 0;
  redisAsyncFree(ac);
  if (!connected) context_gone(l, reason);
}

static void go_up(sl_redis_link *l) {
  l->state = ST_UP;
  l->st.up = true;
  l->st.connects++;
  l->retry_ms = RETRY_MIN_MS;
  l->progress = uv_now(l->loop);
  if (l->ever_up || l->fail_streak)
    sl_log_info("redis %s (%s:%d) up%s", l->name, l->url.host, l->url.port,
                l->ever_up ? " again" : "");
  l->ever_up = true;
  l->fail_streak = 0;
  if (l->ops.on_up) l->ops.on_up(l, l->ud);
}

static void timer_cb(uv_timer_t *t);

static void arm_check(sl_redis_link *l) {
  if (l->state == ST_UP && l->timeout_ms) uv_timer_start(&l->timer, timer_cb, 1000, 1000);
}

/* hiredis calls every command callback through here. */
static void reply_cb(redisAsyncContext *ac, void *reply, void *priv) {
  cmdrec *r = priv;
  sl_redis_link *l = r->link;
  if (l->state == ST_CLOSED) return; /* being freed: the owner is gone */
  l->progress = uv_now(l->loop);
  if (!reply) {
    if (r->called) return;
    r->called = true;
  } else if (!r->sub && l->st.pending) {
    l->st.pending--;
  }
  sl_redis_cb cb = r->cb;
  void *ud = r->ud;
  if (!r->sub && reply) rec_put(l, r);
  if (!cb) return;
  l->in_cb++;
  cb(l, reply, ud);
  l->in_cb--;
}

#define FMT_KEEP 65536 /* the reused command buffer is freed when a command grew it past this */

/* Write the decimal digits of v at p; returns the end. */
static char *put_dec(char *p, size_t v) {
  char t[24];
  int n = 0;
  do t[sizeof t - 1 - n++] = (char)('0' + v % 10);
  while ((v /= 10) != 0);
  memcpy(p, t + sizeof t - n, (size_t)n);
  return p + n;
}

/* The RESP text of a command into b (emptied first): what redisFormatSdsCommandArgv writes,
 * without its printf-style formatting and its allocation per command. */
static void resp_format(sl_sbuf *b, int argc, const char **argv, const size_t *argvlen) {
  size_t total = 24;
  for (int i = 0; i < argc; i++) total += (argvlen ? argvlen[i] : strlen(argv[i])) + 26;
  b->len = 0;
  sl_sbuf_reserve(b, total); /* "$" + at most 20 digits + 2 CRLF per argument */
  char *p = b->data;
  *p++ = '*';
  p = put_dec(p, (size_t)argc);
  *p++ = '\r';
  *p++ = '\n';
  for (int i = 0; i < argc; i++) {
    size_t n = argvlen ? argvlen[i] : strlen(argv[i]);
    *p++ = '$';
    p = put_dec(p, n);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, argv[i], n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
  }
  *p = 0; /* hiredis looks for the command name with strchr (SUBSCRIBE & co.) */
  b->len = (size_t)(p - b->data);
}

static int send_argv(sl_redis_link *l, sl_redis_cb cb, void *ud, int argc, const char **argv,
                     const size_t *argvlen) {
  cmdrec *r = rec_get(l, cb, ud);
  r->sub =
      (argvlen ? argvlen[0] : strlen(argv[0])) >= 9 &&
      (strncasecmp(argv[0], "subscribe", 9) == 0 || strncasecmp(argv[0], "psubscribe", 10) == 0);
  resp_format(&l->fmt, argc, argv, argvlen);
  int rc = redisAsyncFormattedCommand(l->ac, reply_cb, r, l->fmt.data, l->fmt.len);
  if (l->fmt.cap > FMT_KEEP) sl_sbuf_free(&l->fmt); /* hiredis copied it: keep a small one */
  if (rc != REDIS_OK) {
    rec_put(l, r);
    return SL_EINVAL;
  }
  if (!l->st.pending) l->progress = uv_now(l->loop);
  if (!r->sub) l->st.pending++;
  l->st.commands++;
  return 0;
}

/* AUTH / SELECT replies during the handshake. */
static void handshake_cb(sl_redis_link *l, redisReply *r, void *ud) {
  const char *what = ud;
  if (!r) return; /* dropped: the disconnect path reports */
  if (r->type == REDIS_REPLY_ERROR) {
    char why[256];
    snprintf(why, sizeof why, "%s failed: %.200s", what, r->str);
    drop(l, why);
    return;
  }
  if (--l->handshake == 0) {
    go_up(l);
    arm_check(l);
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  sl_redis_link *l = ac->data;
  if (!l) return;
  if (status != REDIS_OK) {
    context_gone(l, ac->errstr[0] ? ac->errstr : "connect failed"); /* hiredis frees ac */
    return;
  }
  uv_timer_stop(&l->timer);
  if (l->url.pass) {
    const char *argv[3] = {"AUTH", l->url.user ? l->url.user : l->url.pass, l->url.pass};
    l->handshake++;
    send_argv(l, handshake_cb, (void *)"AUTH", l->url.user ? 3 : 2, argv, NULL);
  }
  if (l->url.db) {
    char db[16];
    snprintf(db, sizeof db, "%d", l->url.db);
    const char *argv[2] = {"SELECT", db};
    l->handshake++;
    send_argv(l, handshake_cb, (void *)"SELECT", 2, argv, NULL);
  }
  if (!l->handshake) {
    go_up(l);
    arm_check(l);
  } else {
    uv_timer_start(&l->timer, timer_cb, CONNECT_TIMEOUT_MS, 0);
  }
}

static void timer_cb(uv_timer_t *t) {
  sl_redis_link *l = t->data;
  switch (l->state) {
  case ST_DOWN: start_connect(l); break;
  case ST_CONNECTING: drop(l, "connect timed out"); break;
  case ST_UP:
    if (l->timeout_ms && l->st.pending && uv_now(l->loop) - l->progress > l->timeout_ms) {
      char why[64];
      snprintf(why, sizeof why, "no reply for %llu ms", (unsigned long long)l->timeout_ms);
      drop(l, why);
    }
    break;
  default: break;
  }
}

static void schedule_retry(sl_redis_link *l) {
  uint64_t d = l->retry_ms;
  uint8_t j;
  sl_random_bytes(&j, 1);
  d = d / 2 + (d / 2) * j / 255; /* jitter: half to the full delay */
  l->retry_ms = l->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : l->retry_ms * 2;
  uv_timer_start(&l->timer, timer_cb, d, 0);
}

static void start_connect(sl_redis_link *l) {
  l->reason[0] = 0;
  l->state = ST_CONNECTING;
  redisAsyncContext *ac = redisAsyncConnect(l->url.host, l->url.port);
  if (!ac) {
    context_gone(l, "out of memory");
    return;
  }
  if (ac->err) {
    char why[256];
    snprintf(why, sizeof why, "%s", ac->errstr);
    redisAsyncFree(ac);
    context_gone(l, why);
    return;
  }
  ac->data = l;
  /* keep the reply buffer between replies: hiredis frees it whenever it is empty and has
   * grown past 16 KB, and allocating it again for every large XREAD reply made malloc
   * consolidate its free lists each time (a third of a busy node's CPU) */
  if (ac->c.reader) ac->c.reader->maxbuf = 0;
  if (glue_attach(ac, l->loop) != 0) {
    ac->data = NULL;
    redisAsyncFree(ac);
    context_gone(l, "cannot watch the socket");
    return;
  }
  l->ac = ac;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  /* hiredis 0.14 finishes a connect on the first writable event, and asks for one only when
   * a command is queued: ask now, so that the connect (or its failure) is seen at once */
  if (ac->ev.addWrite) ac->ev.addWrite(ac->ev.data);
  uv_timer_start(&l->timer, timer_cb, CONNECT_TIMEOUT_MS, 0);
}

/* sl_redis_link_new: see redis_link.h. */
sl_redis_link *sl_redis_link_new(uv_loop_t *loop, const sl_redis_url *url, const char *name,
                                 const sl_redis_link_ops *ops, void *ud) {
  sl_redis_link *l = sl_xcalloc(1, sizeof *l);
  l->loop = loop;
  sl_redis_url_copy(&l->url, url);
  l->name = sl_xstrdup(name ? name : "link");
  if (ops) l->ops = *ops;
  l->ud = ud;
  l->live.next = l->live.prev = &l->live;
  l->retry_ms = RETRY_MIN_MS;
  uv_timer_init(loop, &l->timer);
  l->timer.data = l;
  uv_timer_start(&l->timer, timer_cb, 0, 0); /* state DOWN: connect from the loop */
  return l;
}

/* sl_redis_link_set_timeout: see redis_link.h. */
void sl_redis_link_set_timeout(sl_redis_link *l, uint64_t ms) {
  l->timeout_ms = ms;
  arm_check(l);
}

/* sl_redis_link_free: see redis_link.h. */
void sl_redis_link_free(sl_redis_link *l) {
  if (!l || l->state == ST_CLOSED) return;
  l->state = ST_CLOSED;
  l->st.up = false;
  redisAsyncContext *ac = l->ac;
  l->ac = NULL;
  if (ac) {
    ac->data = NULL;    /* no connect/disconnect callback reaches the link */
    redisAsyncFree(ac); /* deferred by hiredis when inside one of its callbacks */
  }
  uv_timer_stop(&l->timer);
  /* the records stay until the handle is closed: a deferred free still calls reply_cb */
  uv_close((uv_handle_t *)&l->timer, timer_closed);
}

/* sl_redis_link_up: see redis_link.h. */
bool sl_redis_link_up(const sl_redis_link *l) { return l && l->state == ST_UP && !l->dropping; }

/* sl_redis_link_stats_get: see redis_link.h. */
void sl_redis_link_stats_get(const sl_redis_link *l, sl_redis_link_stats *st) { *st = l->st; }

/* sl_redis_link_cmd_argv: see redis_link.h. */
int sl_redis_link_cmd_argv(sl_redis_link *l, sl_redis_cb cb, void *ud, int argc, const char **argv,
                           const size_t *argvlen) {
  if (!l || l->state != ST_UP || !l->ac || l->dropping) return SL_ESTATE;
  if (argc < 1) return SL_EINVAL;
  return send_argv(l, cb, ud, argc, argv, argvlen);
}

/* sl_redis_link_cmd: see redis_link.h. */
int sl_redis_link_cmd(sl_redis_link *l, sl_redis_cb cb, void *ud, const char *fmt, ...) {
  if (!l || l->state != ST_UP || !l->ac || l->dropping) return SL_ESTATE;
  char *cmd = NULL;
  va_list ap;
  va_start(ap, fmt);
  int len = redisvFormatCommand(&cmd, fmt, ap);
  va_end(ap);
  if (len < 0 || !cmd) return SL_EINVAL;
  cmdrec *r = rec_get(l, cb, ud);
  r->sub = strncasecmp(fmt, "subscribe", 9) == 0 || strncasecmp(fmt, "psubscribe", 10) == 0;
  int rc = redisAsyncFormattedCommand(l->ac, reply_cb, r, cmd, (size_t)len);
  redisFreeCommand(cmd);
  if (rc != REDIS_OK) {
    rec_put(l, r);
    return SL_EINVAL;
  }
  if (!l->st.pending) l->progress = uv_now(l->loop);
  if (!r->sub) l->st.pending++;
  l->st.commands++;
  return 0;
}
