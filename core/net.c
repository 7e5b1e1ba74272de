/* net.c - TCP listener, connections, HTTP/1.1 request parsing (http_parser), the write path.
 *
 * Reads use one shared buffer per process: a connection keeps only what its parser state
 * needs (http_parser's 32 bytes, a request struct while a request is being read, a pooled
 * wslay context while a WebSocket frame is partially read).
 *
 * Writes: every connection has one queue of message references (sl_mq). sl_conn_flush
 * gathers queued frames into one iovec array, tries uv_try_write, and hands what the kernel
 * did not take to a single uv_write; while that write is in flight nothing else is written,
 * and the unsent byte count (wq_bytes) is what backpressure decisions look at.
 *
 * TLS (a listener with a context, tls.h) sits between the socket and everything above:
 * ciphertext read goes through sl_tls_feed and its plaintext takes the plain path (HTTP
 * parser or the upgraded connection's on_data); on the write side the queue holds the same
 * shared plaintext frames and sl_conn_flush encrypts them (up to SL_TLS_BATCH bytes at a
 * time) into the module's output buffer, tries the kernel, and keeps only the ciphertext the
 * kernel did not take (c->tout) for the one uv_write in flight. A frame leaves the queue
 * once encrypted, but its bytes stay counted in wq_bytes until its ciphertext is written, so
 * backpressure sees the same number as on a plain connection. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <ctype.h>
#include <errno.h>
#include <unistd.h>
#include <sys/stat.h>
#include <arpa/inet.h>
#include "net.h"
#include "net_int.h"
#include "tls.h"
#include "msg.h"
#include "sl_util.h"

#define SL_READ_BUF (64 * 1024)
#define SL_MAX_URL 8192
#define SL_MAX_HEADERS (16 * 1024)
#define SL_HEADER_TIMEOUT_MS 10000
#define SL_IDLE_TIMEOUT_MS 60000
#define SL_IOV_BATCH 256
/* Plaintext encrypted per step of a flush: one full record. What the kernel does not take is
 * kept as ciphertext per connection, so this bounds what a stalled TLS connection holds
 * beyond its queue of shared frames. */
#define SL_TLS_BATCH (16 * 1024)
/* Ciphertext the engine may produce on its own (alerts, key updates) while a write waits: a
 * peer that provokes more without reading is closed. */
#define SL_TLS_LATE_MAX (256 * 1024)

/* Ciphertext of a TLS connection not yet taken by the kernel: buf[off, len) (in flight while
 * c->writing), and what the read side produced meanwhile (late), sent after it. `plain` is
 * the plaintext those bytes carry, still counted in c->wq_bytes. Freed when empty. */
typedef struct sl_tls_out {
  sl_sbuf buf, late;
  size_t off, plain, late_plain;
} sl_tls_out;

/* Lingering close (nginx's lingering_time): after an early error answer, read and drop what
 * the client still sends for at most this long / this much, so that closing with unread
 * data (a reset, which discards our answer at the client) does not happen while it is
 * still sending. SL_LINGER_MAX bounds the refused connections being answered at once. */
#define SL_LINGER_MS 5000
#define SL_LINGER_BYTES (64u << 20)
#define SL_LINGER_MAX 1024

static char read_buf[SL_READ_BUF];
static http_parser_settings parser_settings;

static void on_close(uv_handle_t *h);
static void refuse_partial(sl_conn *v, int reason);
static void conn_start(sl_conn *c);

/* ---- timeouts ------------------------------------------------------------------------ */

/* A closing connection is never armed: its memory goes away in the close callback, and a
 * link left in the gateway's list would be walked by the sweeper after that. */
static void timeout_arm(sl_conn *c, uint64_t ms) {
  if (c->closing) return;
  sl_list_del(&c->tlink);
  c->deadline = uv_now(c->srv->gw->loop) + ms;
  sl_list_push(&c->srv->gw->timeouts, &c->tlink);
}

static void timeout_disarm(sl_conn *c) { sl_list_del(&c->tlink); }

static uint64_t partial_timeout(const sl_conn *c) {
  return (uint64_t)c->srv->cfg->partial_timeout_ms;
}

/* The sweep where a deadline passed: a lingering connection closes; a partial WebSocket
 * message goes to its owner; an HTTP request still being read is answered 408 (counted as a
 * partial-message timeout when its body was being read). */
static void deadline_passed(sl_conn *c) {
  timeout_disarm(c);
  if (c->lingering) {
    sl_conn_close(c);
  } else if (c->mode == SL_CONN_UPGRADED) {
    sl_log_debug("closing a WebSocket: partial message timeout");
    refuse_partial(c, SL_REFUSE_PARTIAL_TIMEOUT);
  } else if (c->req && !c->req->complete && c->wq.n == 0 && !c->held) {
    sl_log_debug("answering 408: HTTP %s timeout", c->req->in_body ? "body" : "header");
    if (c->req->in_body) c->srv->lim.refused[SL_REFUSE_PARTIAL_TIMEOUT]++;
    sl_conn_refuse(c, 408, "REQUEST_TIMEOUT", "request timeout");
  } else {
    sl_log_debug("closing a connection: HTTP timeout");
    sl_conn_close(c);
  }
}

static void sweep_cb(uv_timer_t *t) {
  sl_gateway *gw = t->data;
  uint64_t now = uv_now(gw->loop);
  /* Expired connections move to a list of their own first: handling one may close others
   * (a session's other transports), which takes them off whichever list they are on. */
  sl_link expired;
  sl_list_init(&expired);
  sl_link *l = gw->timeouts.next;
  while (l != &gw->timeouts) {
    sl_link *nx = l->next;
    if (sl_container_of(l, sl_conn, tlink)->deadline <= now) {
      sl_list_del(l);
      sl_list_push(&expired, l);
    }
    l = nx;
  }
  while (!sl_list_empty(&expired)) deadline_passed(sl_container_of(expired.next, sl_conn, tlink));
  for (size_t i = 0; i < gw->nservers; i++) sl__net_addr_sweep(&gw->servers[i], now);
}

/* sl_net_start_sweeper: see net.h. */
void sl_net_start_sweeper(sl_gateway *gw) {
  uv_timer_init(gw->loop, &gw->sweep);
  gw->sweep.data = gw;
  uv_timer_start(&gw->sweep, sweep_cb, 1000, 1000);
  uv_unref((uv_handle_t *)&gw->sweep);
}

/* ---- request state ------------------------------------------------------------------- */

static void req_free(sl_req *r) {
  if (!r) return;
  sl_sbuf_free(&r->url);
  sl_sbuf_free(&r->body);
  sl_sbuf_free(&r->hfield);
  sl_sbuf_free(&r->hvalue);
  sl_sbuf_free(&r->headers);
  free(r->upgrade);
  free(r->connection);
  free(r->ws_key);
  free(r->ws_version);
  free(r->content_type);
  free(r->authorization);
  free(r->origin);
  free(r->host);
  free(r->acr_headers);
  free(r);
}

static void req_store_header(sl_req *r, bool keep_all) {
  if (!r->hfield.len) return;
  sl_sbuf_append(&r->hvalue, "", 1);
  r->hvalue.len--;
  const char *f = r->hfield.data;
  size_t fl = r->hfield.len;
  if (keep_all) {
    for (size_t i = 0; i < fl; i++) {
      char ch = (char)tolower((unsigned char)f[i]);
      sl_sbuf_append(&r->headers, &ch, 1);
    }
    sl_sbuf_append(&r->headers, "", 1);
    sl_sbuf_append(&r->headers, r->hvalue.data ? r->hvalue.data : "", r->hvalue.len + 1);
    r->nheaders++;
  }
  char **slot = NULL;
#define HDR_IS(name) (fl == sizeof(name) - 1 && strncasecmp(f, name, fl) == 0)
  if (HDR_IS("upgrade"))
    slot = &r->upgrade;
  else if (HDR_IS("connection"))
    slot = &r->connection;
  else if (HDR_IS("sec-websocket-key"))
    slot = &r->ws_key;
  else if (HDR_IS("sec-websocket-version"))
    slot = &r->ws_version;
  else if (HDR_IS("content-type"))
    slot = &r->content_type;
  else if (HDR_IS("authorization"))
    slot = &r->authorization;
  else if (HDR_IS("origin"))
    slot = &r->origin;
  else if (HDR_IS("host"))
    slot = &r->host;
  else if (HDR_IS("access-control-request-headers"))
    slot = &r->acr_headers;
  else if (HDR_IS("forwarded"))
    r->proxied |= SL_PROXY_FORWARDED;
  else if (HDR_IS("x-forwarded-for"))
    r->proxied |= SL_PROXY_X_FORWARDED_FOR;
  else if (HDR_IS("x-real-ip"))
    r->proxied |= SL_PROXY_X_REAL_IP;
#undef HDR_IS
  if (slot && !*slot) *slot = sl_xstrndup(r->hvalue.data ? r->hvalue.data : "", r->hvalue.len);
  r->hfield.len = 0;
  r->hvalue.len = 0;
}

static sl_conn *parser_conn(http_parser *p) { return sl_container_of(p, sl_conn, parser); }

/* Bytes of partial input net holds for c: a request being read (its URL, its headers twice:
 * the parser's buffers and the stored values, its body) and pipelined bytes. */
static uint64_t http_held(const sl_conn *c) {
  uint64_t n = c->pend ? c->pend->len : 0;
  const sl_req *r = c->req;
  if (r && !r->complete) n += r->url.len + 2 * (uint64_t)r->header_bytes + r->body.len;
  return n;
}

/* The request callback of the listener that accepted c. */
static void conn_request(sl_conn *c) {
  if (c->api)
    c->srv->on_api_request(c);
  else
    c->srv->on_request(c);
}

static int on_message_begin(http_parser *p) {
  sl_conn *c = parser_conn(p);
  /* The previous request of this read closed the connection (an HTTP/1.0 answer written at
   * once, an error): the pipelined rest is not ours to parse. */
  if (c->closing) return -1;
  req_free(c->req);
  c->req = sl_xcalloc(1, sizeof(sl_req));
  sl__net_set_charge(c, http_held(c));
  timeout_arm(c, SL_HEADER_TIMEOUT_MS);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  sl_req *r = parser_conn(p)->req;
  if (r->url.len + len > SL_MAX_URL) return -1;
  sl_sbuf_append(&r->url, at, len);
  return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  sl_req *r = parser_conn(p)->req;
  r->header_bytes += len;
  if (r->header_bytes > SL_MAX_HEADERS) return -1;
  if (r->last_was_value) {
    req_store_header(r, parser_conn(p)->srv->keep_headers);
    r->last_was_value = 0;
  }
  sl_sbuf_append(&r->hfield, at, len);
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  sl_req *r = parser_conn(p)->req;
  r->header_bytes += len;
  if (r->header_bytes > SL_MAX_HEADERS) return -1;
  r->last_was_value = 1;
  sl_sbuf_append(&r->hvalue, at, len);
  return 0;
}

static int on_headers_complete(http_parser *p) {
  sl_conn *c = parser_conn(p);
  sl_req *r = c->req;
  if (r->last_was_value) req_store_header(r, parser_conn(p)->srv->keep_headers);
  r->last_was_value = 0;
  sl_sbuf_free(&r->hfield);
  sl_sbuf_free(&r->hvalue);
  if (p->content_length != ULLONG_MAX && p->content_length > (uint64_t)c->srv->cfg->max_payload &&
      !p->upgrade) {
    /* Refuse now instead of reading a body we will not keep. */
    r->too_big = true;
    r->complete = true;
    timeout_disarm(c);
    c->close_after_write = 1;
    /* The body is on its way: answer, then discard it for a while (lingering close). */
    c->lingering = 1;
    conn_request(c);
    if (!r->answered && !c->closing)
      sl_http_respond(c, 413, "text/plain", "Payload Too Large", 17, NULL);
    return -1;
  }
  if (!p->upgrade &&
      ((p->flags & F_CHUNKED) || (p->content_length > 0 && p->content_length != ULLONG_MAX))) {
    /* Headers had their 10 s; the body gets partialMessageTimeoutMs from here. */
    r->in_body = true;
    timeout_arm(c, partial_timeout(c));
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  sl_conn *c = parser_conn(p);
  sl_req *r = c->req;
  if (r->too_big) return 0;
  if (r->body.len + len > (size_t)c->srv->cfg->max_payload) {
    r->too_big = true;
    sl_sbuf_free(&r->body);
    sl__net_set_charge(c, http_held(c));
    return 0;
  }
  if (!sl_conn_inbound(c, http_held(c) + len)) {
    sl_log_debug("refusing a request body: maxInboundBufferBytes spent");
    sl_conn_refuse(c, 503, "INBOUND_BUFFERS_FULL",
                   "the server's inbound buffers are full, try again later");
    return -1;
  }
  sl_sbuf_append(&r->body, at, len);
  return 0;
}

static int on_message_complete(http_parser *p) {
  sl_conn *c = parser_conn(p);
  c->req->complete = true;
  timeout_disarm(c);
  conn_request(c);
  /* The body was used synchronously: it stops counting against the budget now (a held
   * request keeps its headers only). */
  if (c->req) {
    sl_sbuf_free(&c->req->body);
    sl__net_set_charge(c, http_held(c));
  }
  /* A response may still be pending (a held polling GET): stop parsing pipelined requests
   * until it is written. */
  if (!c->closing && (c->held || c->wq.n)) {
    if (c->mode == SL_CONN_HTTP && !p->upgrade) http_parser_pause(p, 1);
  }
  return 0;
}

/* ---- reading ---------------------------------------------------------------------------- */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  (void)suggested;
  buf->base = read_buf;
  buf->len = sizeof read_buf;
}

static void http_feed(sl_conn *c, const char *data, size_t len) {
  if (HTTP_PARSER_ERRNO(&c->parser) == HPE_PAUSED) {
    /* A pipelined request behind one whose response is pending: keep the bytes until the
     * response is written (bounded). */
    if (!c->pend) c->pend = sl_xcalloc(1, sizeof *c->pend);
    if (c->pend->len + len > SL_MAX_HEADERS + (size_t)c->srv->cfg->max_payload ||
        !sl_conn_inbound(c, http_held(c) + len)) {
      sl_conn_close(c);
      return;
    }
    sl_sbuf_append(c->pend, data, len);
    return;
  }
  size_t n = http_parser_execute(&c->parser, &parser_settings, data, len);
  if (c->closing) return;
  if (c->mode == SL_CONN_UPGRADED) {
    /* The upgrade was accepted: the request state is not needed any more, and what
     * follows the headers belongs to the new protocol. */
    req_free(c->req);
    c->req = NULL;
    sl__net_set_charge(c, 0); /* from here on ws charges what it holds */
    /* the parser is done: its bytes become ws.c's frame tracker (net.h), starting empty */
    memset(&c->parser, 0, sizeof c->parser);
    if (n < len && c->ops->on_data) c->ops->on_data(c, (const uint8_t *)data + n, len - n);
    return;
  }
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (e == HPE_PAUSED) {
    c->paused = 1;
    if (n < len) {
      if (!sl_conn_inbound(c, http_held(c) + (len - n))) {
        sl_conn_close(c);
        return;
      }
      if (!c->pend) c->pend = sl_xcalloc(1, sizeof *c->pend);
      sl_sbuf_append(c->pend, data + n, len - n);
    }
    return;
  }
  if (e != HPE_OK && c->lingering) {
    /* refused from a parser callback (413, 503): answered already, the rest is dropped */
    sl_conn_flush(c);
    return;
  }
  if (e != HPE_OK) {
    int status = 400;
    const char *msg = "bad request\n";
    if (c->req && c->req->header_bytes > SL_MAX_HEADERS) {
      status = 431;
      msg = "request header fields too large\n";
    } else if (e == HPE_CB_url) {
      status = 414;
      msg = "URI too long\n";
    }
    sl_log_debug("HTTP parse error: %s", http_errno_name(e));
    c->close_after_write = 1;
    c->lingering = 1; /* what follows the bad request is read and dropped, then close */
    if (!c->wq.n) sl_http_respond(c, status, "text/plain", msg, strlen(msg), NULL);
    sl_conn_flush(c);
    return;
  }
  if (c->req && !c->req->complete && !c->closing && !sl_conn_inbound(c, http_held(c))) {
    /* a request's headers left partial by this read (bodies are charged as they arrive) */
    sl_log_debug("refusing a request: maxInboundBufferBytes spent");
    sl_conn_refuse(c, 503, "INBOUND_BUFFERS_FULL",
                   "the server's inbound buffers are full, try again later");
    return;
  }
  if (c->parser.upgrade && c->mode == SL_CONN_HTTP && !c->closing && !c->close_after_write) {
    /* An upgrade request that nobody accepted has already been answered. */
    c->close_after_write = 1;
    sl_conn_flush(c);
  }
}

static int tls_send(sl_conn *c, const uint8_t *p, size_t len, size_t plain);

static int tls_on_plain(void *ud, const uint8_t *data, size_t len) {
  sl_conn *c = ud;
  if (c->mode == SL_CONN_UPGRADED) {
    if (c->ops->on_data) c->ops->on_data(c, data, len);
  } else {
    http_feed(c, (const char *)data, len);
  }
  /* A refused request closes after its answer: nothing more is read from that peer. */
  return c->closing || (c->mode == SL_CONN_HTTP && c->close_after_write);
}

static void tls_on_cipher(void *ud, const uint8_t *data, size_t len) {
  sl_conn *c = ud;
  if (!c->closing) tls_send(c, data, len, 0);
}

static const sl_tls_sink tls_sink = {tls_on_plain, tls_on_cipher};

static void tls_read(sl_conn *c, const uint8_t *data, size_t len) {
  bool hs = sl_tls_handshake_done(c->tls);
  int r = sl_tls_feed(c->tls, data, len, &tls_sink, c);
  if (!hs && sl_tls_handshake_done(c->tls)) {
    /* which record layer the connection got (tls.h: the handoff), counted and, when
     * OpenSSL keeps it, said why */
    if (sl_tls_offloaded(c->tls)) {
      c->srv->tls_conns_offloaded++;
    } else {
      c->srv->tls_conns_openssl++;
      sl_log_debug("TLS connection kept on OpenSSL's record layer: %s",
                   sl_tls_fallback_reason(c->tls));
    }
  }
  if (r == 0 || c->closing) return;
  if (r == SL_EIO && !hs) {
    char addr[64];
    c->srv->tls_handshake_errors++;
    sl_log_debug("TLS handshake with %s failed: %s", sl_conn_remote(c, addr, sizeof addr),
                 sl_tls_last_error());
  } else if (r == SL_EIO) {
    c->srv->tls_record_errors++;
    sl_log_debug("TLS error, closing the connection: %s", sl_tls_last_error());
  }
  sl_conn_close(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_conn *c = sl_container_of((uv_tcp_t *)s, sl_conn, tcp);
  if (nread < 0) {
    if (c->lingering && !c->closing && c->wq.n) {
      /* the peer is done sending: close as soon as the answer is written */
      c->lingering = 0;
      uv_read_stop(s);
      return;
    }
    sl_conn_close(c);
    return;
  }
  if (nread == 0 || c->closing) return;
  if (c->lingering) {
    c->discarded += (uint32_t)nread; /* reads are at most SL_READ_BUF */
    if (c->discarded > SL_LINGER_BYTES) sl_conn_close(c);
    return;
  }
  if (c->tls) {
    tls_read(c, (const uint8_t *)buf->base, (size_t)nread);
  } else if (c->mode == SL_CONN_UPGRADED) {
    if (c->ops->on_data) c->ops->on_data(c, (const uint8_t *)buf->base, (size_t)nread);
  } else {
    http_feed(c, buf->base, (size_t)nread);
  }
}

/* sl_conn_resume: see net.h. */
void sl_conn_resume(sl_conn *c) {
  if (c->closing || !c->paused) return;
  c->paused = 0;
  http_parser_pause(&c->parser, 0);
  if (c->pend) {
    sl_sbuf *p = c->pend;
    c->pend = NULL;
    /* still charged while it is parsed: the parser copies it into the next request */
    http_feed(c, p->data, p->len);
    sl_sbuf_free(p);
    free(p);
    if (!c->closing) sl__net_set_charge(c, http_held(c));
  }
}

/* ---- the inbound budget --------------------------------------------------------------- */

/* Refuse v's partial input (reason SL_REFUSE_INBOUND_BUDGET or SL_REFUSE_PARTIAL_TIMEOUT):
 * uncharge it now, count, and let the owner (upgraded) or net (HTTP) drop it and close. */
static void refuse_partial(sl_conn *v, int reason) {
  sl__net_set_charge(v, 0);
  v->srv->lim.refused[reason]++;
  if (v->mode == SL_CONN_UPGRADED) {
    if (v->ops && v->ops->on_limit)
      v->ops->on_limit(v, reason);
    else
      sl_conn_close(v);
    return;
  }
  if (v->req && !v->req->complete && !v->held && !v->paused && v->wq.n == 0) {
    sl_conn_refuse(v, 503, "INBOUND_BUFFERS_FULL",
                   "the server's inbound buffers are full, try again later");
  } else {
    sl_conn_close(v);
  }
}

/* sl_conn_inbound: see net.h. */
bool sl_conn_inbound(sl_conn *c, uint64_t bytes) {
  sl_limits *L = &c->srv->lim;
  if (bytes <= sl_conn_charged(c)) {
    sl__net_set_charge(c, bytes);
    return true;
  }
  uint64_t limit = (uint64_t)c->srv->cfg->max_inbound_bytes;
  while (L->inbound - sl_conn_charged(c) + bytes > limit) {
    sl_heap_node *top = sl_heap_min(&L->big);
    sl_conn *v = top ? sl_container_of(top, sl_conn, inb) : NULL;
    if (!v || v == c || sl_conn_charged(v) <= bytes) {
      L->refused[SL_REFUSE_INBOUND_BUDGET]++;
      return false;
    }
    sl_log_debug("maxInboundBufferBytes spent: refusing a connection holding %llu bytes",
                 (unsigned long long)sl_conn_charged(v));
    refuse_partial(v, SL_REFUSE_INBOUND_BUDGET);
  }
  sl__net_set_charge(c, bytes);
  return true;
}

/* sl_conn_deadline_start: see net.h. */
void sl_conn_deadline_start(sl_conn *c) {
  if (c->tlink.next || c->closing) return;
  timeout_arm(c, partial_timeout(c));
}

/* sl_conn_deadline_stop: see net.h. */
void sl_conn_deadline_stop(sl_conn *c) { timeout_disarm(c); }

static void accept_conn(sl_server *srv, uv_stream_t *l, int status, bool api) {
  if (status < 0) {
    sl_log_warn("accept failed on %s: %s", srv->cfg->name, uv_strerror(status));
    return;
  }
  /* TCP: from the gateway's pool; a Unix socket's (the API listener) is the full struct */
  sl_conn *c =
      l->type == UV_NAMED_PIPE ? sl_xcalloc(1, sizeof *c) : sl_pool_alloc(&srv->gw->pool_conn);
  c->srv = srv;
  sl_heap_node_init(&c->inb);
  c->api = api;
  if (l->type == UV_NAMED_PIPE)
    uv_pipe_init(srv->gw->loop, &c->pipe, 0);
  else
    uv_tcp_init(srv->gw->loop, &c->tcp);
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    c->closing = 1;
    return;
  }
  conn_start(c);
}

/* sl__server_adopt: see net.h. */
sl_conn *sl__server_adopt(sl_server *srv, uv_os_sock_t fd) {
  sl_conn *c = sl_pool_alloc(&srv->gw->pool_conn);
  c->srv = srv;
  sl_heap_node_init(&c->inb);
  uv_tcp_init(srv->gw->loop, &c->tcp);
  if (uv_tcp_open(&c->tcp, fd) != 0) {
    uv_close((uv_handle_t *)&c->tcp, on_close);
    c->closing = 1;
    return NULL;
  }
  conn_start(c);
  return c;
}

/* What every accepted connection starts with: listed, HTTP parser ready, header deadline
 * armed, reading. */
static void conn_start(sl_conn *c) {
  sl_server *srv = c->srv;
  sl_list_push(&srv->conns, &c->link);
  /* TLS on the client port only: the API listener is plain HTTP (loopback or a Unix socket). */
  bool api = c->api;
  if (!api && srv->tls && !(c->tls = sl_tls_new(srv->tls))) {
    sl_log_warn("cannot create a TLS connection on %s (out of memory?)", srv->cfg->name);
    sl_conn_close(c);
    return;
  }
  if (c->tcp.type == UV_TCP) uv_tcp_nodelay(&c->tcp, 1);
  if (srv->cfg->socket_sndbuf > 0 && !api) {
    int v = (int)srv->cfg->socket_sndbuf;
    uv_send_buffer_size((uv_handle_t *)&c->tcp, &v);
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  /* The API listener is for operators: not limited (so /metrics answers during a flood)
   * and not counted; its request bodies are charged to the inbound budget all the same. */
  int why = api                                                      ? -1
            : srv->lim.nconns >= (uint64_t)srv->cfg->max_connections ? SL_REFUSE_CONNECTIONS
                                                                     : sl__net_addr_admit(c);
  if (why >= 0) {
    /* Answer at once (before the request: nothing of it is buffered), then linger. Past
     * SL_LINGER_MAX refusals in progress, just close. */
    srv->lim.refused[why]++;
    sl_log_debug("refusing a connection: %s", sl_refuse_reasons[why]);
    if (srv->lim.nlinger >= SL_LINGER_MAX) {
      sl_conn_close(c);
      return;
    }
    c->counted = 2;
    srv->lim.nlinger++;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
    if (why == SL_REFUSE_CONNECTIONS)
      sl_conn_refuse(c, 503, "TOO_MANY_CONNECTIONS", "the server has maxConnections connections");
    else
      sl_conn_refuse(c, 503, "TOO_MANY_CONNECTIONS",
                     "this address has maxConnectionsPerAddress connections");
    return;
  }
  if (!api) {
    c->counted = 1;
    srv->lim.nconns++;
  }
  timeout_arm(c, SL_HEADER_TIMEOUT_MS);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void on_connection(uv_stream_t *l, int status) { accept_conn(l->data, l, status, false); }
static void on_api_connection(uv_stream_t *l, int status) { accept_conn(l->data, l, status, true); }

static void settings_init(void) {
  static int settings_ready;
  if (!settings_ready) {
    memset(&parser_settings, 0, sizeof parser_settings);
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;
    settings_ready = 1;
  }
}

/* Parse host (an IP literal or "localhost") and port into addr. */
static int resolve(const char *host, int port, struct sockaddr_storage *addr) {
  if (strchr(host, ':')) return uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr);
  return uv_ip4_addr(strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, port,
                     (struct sockaddr_in *)addr);
}

static int bound_port(uv_tcp_t *t) {
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(t, (struct sockaddr *)&bound, &blen);
  return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* sl_server_listen: see net.h. */
int sl_server_listen(sl_server *srv, sl_request_cb on_request) {
  settings_init();
  struct sockaddr_storage addr;
  const char *host = srv->cfg->host ? srv->cfg->host : "0.0.0.0";
  int r;
  r = resolve(host, srv->cfg->port, &addr);
  if (r) return r;
  srv->on_request = on_request;
  if (!srv->lim.idle_addrs.next) sl_list_init(&srv->lim.idle_addrs);
  uv_tcp_init(srv->gw->loop, &srv->listener);
  srv->listener.data = srv;
  r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
  if (!r) r = uv_listen((uv_stream_t *)&srv->listener, 4096, on_connection);
  if (r) {
    uv_close((uv_handle_t *)&srv->listener, NULL);
    return r;
  }
  srv->port = bound_port(&srv->listener);
  srv->listening = true;
  return 0;
}

/* sl_server_listen_api: see net.h. */
int sl_server_listen_api(sl_server *srv, sl_request_cb on_request) {
  const sl_api_config *a = &srv->cfg->api;
  uv_stream_t *l = (uv_stream_t *)&srv->api_listener;
  int r;
  settings_init();
  srv->on_api_request = on_request;
  if (a->path) {
    struct stat st;
    if (lstat(a->path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(a->path); /* stale */
    uv_pipe_init(srv->gw->loop, &srv->api_listener.pipe, 0);
    l->data = srv;
    r = uv_pipe_bind(&srv->api_listener.pipe, a->path);
    if (!r && chmod(a->path, 0660) != 0) r = uv_translate_sys_error(errno);
  } else {
    struct sockaddr_storage addr;
    r = resolve(a->host ? a->host : "127.0.0.1", a->port, &addr);
    if (r) return r;
    uv_tcp_init(srv->gw->loop, &srv->api_listener.tcp);
    l->data = srv;
    r = uv_tcp_bind(&srv->api_listener.tcp, (struct sockaddr *)&addr, 0);
  }
  if (!r) r = uv_listen(l, 512, on_api_connection);
  if (r) {
    uv_close((uv_handle_t *)l, NULL);
    return r;
  }
  if (!a->path) srv->api_port = bound_port(&srv->api_listener.tcp);
  srv->api_listening = true;
  return 0;
}

/* sl_server_close_api: see net.h. */
void sl_server_close_api(sl_server *srv, void (*close_cb)(uv_handle_t *), void *data) {
  if (!srv->api_listening) return;
  srv->api_listening = false;
  uv_handle_t *h = (uv_handle_t *)&srv->api_listener;
  h->data = data;
  uv_close(h, close_cb);
  if (srv->cfg->api.path) unlink(srv->cfg->api.path);
}

/* ---- writing --------------------------------------------------------------------------- */

static void write_cb(uv_write_t *w, int status);

/* Drop `n` bytes from the front of the write queue (wq_bytes is the caller's). */
static void wq_pop_bytes(sl_conn *c, size_t n) {
  while (n > 0) {
    size_t first = sl_mq_bytes_at(&c->wq, 0) - c->head_off;
    if (n >= first) {
      n -= first;
      c->head_off = 0;
      sl_msg_unref(sl_mq_pop(&c->wq));
    } else {
      c->head_off += (uint32_t)n;
      n = 0;
    }
  }
}

/* Drop `n` written bytes from the front of the write queue. */
static void wq_advance(sl_conn *c, size_t n) {
  c->wq_bytes -= n;
  wq_pop_bytes(c, n);
}

static unsigned wq_iov(sl_conn *c, uv_buf_t *iov, unsigned max) {
  unsigned n = 0;
  for (uint32_t i = 0; i < c->wq.n && n < max; i++, n++) {
    sl_msg *m = sl_mq_at(&c->wq, i);
    bool raw = sl_mq_raw_at(&c->wq, i);
    uint8_t *p = raw ? sl_msg_packet(m) : sl_msg_frame(m);
    size_t len = raw ? m->len : sl_msg_frame_len(m);
    if (i == 0) {
      p += c->head_off;
      len -= c->head_off;
    }
    iov[n] = uv_buf_init((char *)p, (unsigned)len);
  }
  return n;
}

static void shutdown_cb(uv_shutdown_t *req, int status) {
  (void)status;
  free(req);
}

/* The early answer is written: half-close (the client sees the end of the answer) and drop
 * what it still sends until it closes, SL_LINGER_MS pass, or SL_LINGER_BYTES arrive. */
static void linger_start(sl_conn *c) {
  if (c->lingering == 2) return;
  c->lingering = 2;
  uv_shutdown_t *req = sl_xmalloc(sizeof *req);
  if (uv_shutdown(req, (uv_stream_t *)&c->tcp, shutdown_cb) != 0) {
    free(req);
    sl_conn_close(c);
    return;
  }
  timeout_arm(c, SL_LINGER_MS);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

static void after_drain(sl_conn *c) {
  if (c->closing) return;
  if (c->wq.n == 0) {
    /* A connection that is not being fed deliveries (idle: answers and control packets only)
     * gives its ring back, so that it holds no buffer; one that is fed keeps it, or every
     * write would pay a malloc and a free. */
    if (!c->fed) sl_mq_release(&c->wq);
    if (c->close_after_write) {
      if (c->lingering)
        linger_start(c);
      else
        sl_conn_close(c);
      return;
    }
    if (c->mode == SL_CONN_HTTP && !c->held) {
      if (c->paused) sl_conn_resume(c);
      if (!c->req || c->req->complete) timeout_arm(c, SL_IDLE_TIMEOUT_MS);
    }
  }
}

/* ---- the TLS write path ---------------------------------------------------------------- */

static void tls_out_free(sl_conn *c) {
  if (!c->tout) return;
  sl_sbuf_free(&c->tout->buf);
  sl_sbuf_free(&c->tout->late);
  free(c->tout);
  c->tout = NULL;
}

/* Write c->tout: try the kernel, then one uv_write for the rest. Precondition: no write in
 * flight. Returns 0 (all written, tout freed), 1 (a uv_write is in flight) or -1 (closed). */
static int tls_out_kick(sl_conn *c) {
  sl_tls_out *o = c->tout;
  while (o) {
    if (o->off == o->buf.len) {
      c->wq_bytes -= o->plain;
      o->plain = 0;
      o->off = o->buf.len = 0;
      if (!o->late.len) break;
      sl_sbuf t = o->buf;
      o->buf = o->late;
      o->late = t;
      o->plain = o->late_plain;
      o->late_plain = 0;
      continue;
    }
    uv_buf_t b = uv_buf_init(o->buf.data + o->off, (unsigned)(o->buf.len - o->off));
    c->srv->net_writes++;
    int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
    if (r < 0) {
      sl_log_debug("write failed: %s", uv_strerror(r));
      sl_conn_close(c);
      return -1;
    }
    o->off += (size_t)r;
    if (o->off == o->buf.len) continue;
    b = uv_buf_init(o->buf.data + o->off, (unsigned)(o->buf.len - o->off));
    c->writing = 1;
    c->wreq = sl_xmalloc(sizeof *c->wreq);
    c->wreq->data = c;
    c->srv->net_writes++;
    if (uv_write(c->wreq, (uv_stream_t *)&c->tcp, &b, 1, write_cb) != 0) {
      free(c->wreq);
      c->wreq = NULL;
      c->writing = 0;
      sl_conn_close(c);
      return -1;
    }
    return 1;
  }
  tls_out_free(c);
  return 0;
}

/* Send ciphertext carrying `plain` queued plaintext bytes (0 for the engine's own records),
 * after whatever ciphertext still waits. Returns as tls_out_kick. */
static int tls_send(sl_conn *c, const uint8_t *p, size_t len, size_t plain) {
  if (c->writing) {
    if (c->tout->late.len + len > SL_TLS_LATE_MAX) {
      sl_log_debug("TLS: a peer that does not read keeps provoking records: closing");
      sl_conn_close(c);
      return -1;
    }
    sl_sbuf_append(&c->tout->late, p, len);
    c->tout->late_plain += plain;
    return 1;
  }
  if (!c->tout) {
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)len);
    c->srv->net_writes += len > 0;
    int r = len ? uv_try_write((uv_stream_t *)&c->tcp, &b, 1) : 0;
    if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
    if (r < 0) {
      sl_log_debug("write failed: %s", uv_strerror(r));
      sl_conn_close(c);
      return -1;
    }
    if ((size_t)r == len) {
      c->wq_bytes -= plain;
      return 0;
    }
    p += r;
    len -= (size_t)r;
    c->tout = sl_xcalloc(1, sizeof *c->tout);
  }
  sl_sbuf_append(&c->tout->buf, p, len);
  c->tout->plain += plain;
  return tls_out_kick(c);
}

static void tls_flush(sl_conn *c) {
  uv_buf_t iov[SL_IOV_BATCH];
  if (c->tout && tls_out_kick(c) != 0) return;
  while (c->wq.n) {
    unsigned n = wq_iov(c, iov, SL_IOV_BATCH);
    size_t used, outlen;
    const uint8_t *out;
    if (sl_tls_encrypt(c->tls, iov, n, SL_TLS_BATCH, &used, &out, &outlen) != 0) {
      sl_log_debug("TLS write failed: %s", sl_tls_last_error());
      sl_conn_close(c);
      return;
    }
    if (!used) return;     /* the handshake is not done: flushed once it is */
    wq_pop_bytes(c, used); /* still counted in wq_bytes until written */
    if (tls_send(c, out, outlen, used) != 0) return;
  }
  after_drain(c);
}

/* sl_conn_flush: see net.h. */
void sl_conn_flush(sl_conn *c) {
  uv_buf_t iov[SL_IOV_BATCH];
  if (c->closing || c->writing) return;
  if (c->tls) {
    tls_flush(c);
    return;
  }
  while (c->wq.n) {
    unsigned n = wq_iov(c, iov, SL_IOV_BATCH);
    c->srv->net_writes++;
    int r = uv_try_write((uv_stream_t *)&c->tcp, iov, n);
    if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
    if (r < 0) {
      sl_log_debug("write failed: %s", uv_strerror(r));
      sl_conn_close(c);
      return;
    }
    size_t total = 0;
    for (unsigned i = 0; i < n; i++) total += iov[i].len;
    wq_advance(c, (size_t)r);
    if ((size_t)r < total) {
      n = wq_iov(c, iov, SL_IOV_BATCH);
      c->inflight = n;
      c->writing = 1;
      c->wreq = sl_xmalloc(sizeof *c->wreq);
      c->wreq->data = c;
      c->srv->net_writes++;
      int e = uv_write(c->wreq, (uv_stream_t *)&c->tcp, iov, n, write_cb);
      if (e) {
        free(c->wreq);
        c->wreq = NULL;
        c->writing = 0;
        sl_conn_close(c);
      }
      return;
    }
  }
  after_drain(c);
}

static void write_cb(uv_write_t *w, int status) {
  sl_conn *c = w->data;
  free(w);
  c->wreq = NULL;
  c->writing = 0;
  if (status < 0 || c->closing) {
    if (!c->closing) sl_conn_close(c);
    return;
  }
  if (c->tls) {
    c->tout->off = c->tout->buf.len; /* uv_write wrote all of it */
    if (tls_out_kick(c) != 0) return;
    if (c->ops && c->ops->on_drain)
      c->ops->on_drain(c);
    else
      sl_conn_flush(c);
    return;
  }
  size_t n = 0;
  for (uint32_t i = 0; i < c->inflight; i++) n += sl_mq_bytes_at(&c->wq, i);
  n -= c->head_off;
  c->inflight = 0;
  wq_advance(c, n);
  if (c->ops && c->ops->on_drain)
    c->ops->on_drain(c); /* e.g. a session refills from lanes */
  else
    sl_conn_flush(c);
}

/* sl_conn_send: see net.h. */
void sl_conn_send(sl_conn *c, sl_msg *m, bool raw) {
  if (c->closing) {
    sl_msg_unref(m);
    return;
  }
  sl_mq_push(&c->wq, m, raw);
  c->wq_bytes += raw ? m->len : sl_msg_frame_len(m);
  sl_conn_flush(c);
}

/* sl_conn_queue: see net.h. */
void sl_conn_queue(sl_conn *c, sl_msg *m, bool raw) {
  if (c->closing) {
    sl_msg_unref(m);
    return;
  }
  sl_mq_push(&c->wq, m, raw);
  c->wq_bytes += raw ? m->len : sl_msg_frame_len(m);
}

static const char *status_text(int s) {
  switch (s) {
  case 101: return "Switching Protocols";
  case 200: return "OK";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Unknown";
  }
}

/* sl_http_respond: see net.h. */
void sl_http_respond(sl_conn *c, int status, const char *ctype, const char *body, size_t len,
                     const char *extra_headers) {
  if (c->closing) return;
  if (c->req) c->req->answered = true;
  bool keep =
      c->req && c->req->complete && http_should_keep_alive(&c->parser) && !c->close_after_write;
  char head[512];
  int hl = snprintf(head, sizeof head,
                    "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Connection: %s\r\n",
                    status, status_text(status), ctype ? ctype : "text/plain", len,
                    keep ? "keep-alive" : "close");
  size_t el = extra_headers ? strlen(extra_headers) : 0;
  sl_msg *m = sl_msg_new((size_t)hl + el + 2 + len, SL_MK_RAW);
  uint8_t *p = sl_msg_packet(m);
  memcpy(p, head, (size_t)hl);
  p += hl;
  if (el) memcpy(p, extra_headers, el);
  p += el;
  memcpy(p, "\r\n", 2);
  p += 2;
  if (len) memcpy(p, body, len);
  if (!keep) c->close_after_write = 1;
  sl_conn_send(c, m, true);
}

/* sl_http_json_error: see net.h. */
void sl_http_json_error(sl_conn *c, int status, const char *code, const char *message) {
  sl_sbuf b = {0};
  sl_sbuf_printf(&b, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
  for (const char *s = message; *s; s++) {
    if (*s == '"' || *s == '\\')
      sl_sbuf_printf(&b, "\\%c", *s);
    else if ((unsigned char)*s < 0x20)
      sl_sbuf_printf(&b, "\\u%04x", (unsigned char)*s);
    else
      sl_sbuf_append(&b, s, 1);
  }
  sl_sbuf_puts(&b, "\"}}");
  sl_http_respond(c, status, "application/json", b.data, b.len, NULL);
  sl_sbuf_free(&b);
}

/* sl_conn_linger: see net.h. */
void sl_conn_linger(sl_conn *c) {
  if (!c->closing && !c->lingering) c->lingering = 1;
}

/* sl_conn_refuse: see net.h. */
void sl_conn_refuse(sl_conn *c, int status, const char *code, const char *message) {
  if (c->closing) return;
  c->close_after_write = 1;
  c->lingering = 1;
  timeout_disarm(c);
  if (c->req) sl_sbuf_free(&c->req->body);
  if (c->pend) {
    sl_sbuf_free(c->pend);
    free(c->pend);
    c->pend = NULL;
  }
  sl__net_set_charge(c, 0);
  sl_http_json_error(c, status, code, message);
}

/* sl_conn_upgrade: see net.h. */
void sl_conn_upgrade(sl_conn *c, const sl_conn_ops *ops) {
  c->mode = SL_CONN_UPGRADED;
  c->ops = ops;
  timeout_disarm(c);
}

/* ---- closing ------------------------------------------------------------------------- */

static void on_close(uv_handle_t *h) {
  sl_conn *c = sl_container_of((uv_tcp_t *)h, sl_conn, tcp);
  sl_mq_clear(&c->wq);
  tls_out_free(c);
  sl_tls_free(c->tls);
  req_free(c->req);
  if (c->pend) {
    sl_sbuf_free(c->pend);
    free(c->pend);
  }
  if (c->tcp.type == UV_NAMED_PIPE)
    free(c);
  else
    sl_pool_free(&c->srv->gw->pool_conn, c);
}

/* sl_conn_close: see net.h. Tells the owner first (eio: the session lost its transport). */
void sl_conn_close(sl_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  timeout_disarm(c);
  sl_list_del(&c->link);
  sl__net_set_charge(c, 0);
  sl__net_addr_release(c);
  if (c->counted == 1)
    c->srv->lim.nconns--;
  else if (c->counted == 2)
    c->srv->lim.nlinger--;
  c->counted = 0;
  if (c->ops && c->ops->on_close) c->ops->on_close(c);
  uv_read_stop((uv_stream_t *)&c->tcp);
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

/* sl_server_close_conns: see net.h. */
void sl_server_close_conns(sl_server *srv) {
  while (!sl_list_empty(&srv->conns)) {
    sl_conn *c = sl_container_of(srv->conns.next, sl_conn, link);
    sl_conn_close(c);
  }
}
