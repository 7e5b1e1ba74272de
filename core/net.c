/* net.c - TCP listener, connections, HTTP/1.1 request parsing (http_parser), the write path.
 *
 * Reads use one shared buffer per process: a connection keeps only what its parser state
 * needs (http_parser's 32 bytes, a request struct while a request is being read, a pooled
 * wslay context while a WebSocket frame is partially read).
 *
 * Writes: every connection has one queue of message references (sl_mq). sl_conn_flush
 * gathers queued frames into one iovec array, tries uv_try_write, and hands what the kernel
 * did not take to a single uv_write; while that write is in flight nothing else is written,
 * and the unsent byte count (wq_bytes) is what backpressure decisions look at. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <arpa/inet.h>
#include "net.h"
#include "msg.h"
#include "sl_util.h"

#define SL_READ_BUF (64 * 1024)
#define SL_MAX_URL 8192
#define SL_MAX_HEADERS (16 * 1024)
#define SL_HEADER_TIMEOUT_MS 10000
#define SL_IDLE_TIMEOUT_MS 60000
#define SL_IOV_BATCH 256

static char read_buf[SL_READ_BUF];
static http_parser_settings parser_settings;

static void on_close(uv_handle_t *h);
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

static void sweep_cb(uv_timer_t *t) {
  sl_gateway *gw = t->data;
  uint64_t now = uv_now(gw->loop);
  sl_link *l = gw->timeouts.next;
  while (l != &gw->timeouts) {
    sl_link *nx = l->next;
    sl_conn *c = sl_container_of(l, sl_conn, tlink);
    if (c->deadline <= now) {
      sl_log_debug("closing a connection: HTTP timeout");
      if (c->req && !c->req->complete && c->wq.n == 0) {
        sl_http_respond(c, 408, "text/plain", "request timeout\n", 16, NULL);
        c->close_after_write = 1;
        timeout_disarm(c);
        sl_conn_flush(c);
      } else {
        sl_conn_close(c);
      }
    }
    l = nx;
  }
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
  free(r->upgrade);
  free(r->connection);
  free(r->ws_key);
  free(r->ws_version);
  free(r->content_type);
  free(r->authorization);
  free(r->origin);
  free(r);
}

static void req_store_header(sl_req *r) {
  if (!r->hfield.len) return;
  sl_sbuf_append(&r->hvalue, "", 1);
  r->hvalue.len--;
  const char *f = r->hfield.data;
  size_t fl = r->hfield.len;
  char **slot = NULL;
#define HDR_IS(name) (fl == sizeof(name) - 1 && strncasecmp(f, name, fl) == 0)
  if (HDR_IS("upgrade")) slot = &r->upgrade;
  else if (HDR_IS("connection")) slot = &r->connection;
  else if (HDR_IS("sec-websocket-key")) slot = &r->ws_key;
  else if (HDR_IS("sec-websocket-version")) slot = &r->ws_version;
  else if (HDR_IS("content-type")) slot = &r->content_type;
  else if (HDR_IS("authorization")) slot = &r->authorization;
  else if (HDR_IS("origin")) slot = &r->origin;
#undef HDR_IS
  if (slot && !*slot) *slot = sl_xstrndup(r->hvalue.data ? r->hvalue.data : "", r->hvalue.len);
  r->hfield.len = 0;
  r->hvalue.len = 0;
}

static sl_conn *parser_conn(http_parser *p) { return sl_container_of(p, sl_conn, parser); }

static int on_message_begin(http_parser *p) {
  sl_conn *c = parser_conn(p);
  /* The previous request of this read closed the connection (an HTTP/1.0 answer written at
   * once, an error): the pipelined rest is not ours to parse. */
  if (c->closing) return -1;
  req_free(c->req);
  c->req = sl_xcalloc(1, sizeof(sl_req));
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
    req_store_header(r);
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
  if (r->last_was_value) req_store_header(r);
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
    c->srv->on_request(c);
    if (!c->wq.n && !c->closing) sl_http_respond(c, 413, "text/plain", "Payload Too Large", 17, NULL);
    return -1;
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
    return 0;
  }
  sl_sbuf_append(&r->body, at, len);
  return 0;
}

static int on_message_complete(http_parser *p) {
  sl_conn *c = parser_conn(p);
  c->req->complete = true;
  timeout_disarm(c);
  c->srv->on_request(c);
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
    if (c->pend->len + len > SL_MAX_HEADERS + (size_t)c->srv->cfg->max_payload) {
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
    if (n < len && c->ops->on_data) c->ops->on_data(c, (const uint8_t *)data + n, len - n);
    return;
  }
  enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
  if (e == HPE_PAUSED) {
    c->paused = 1;
    if (n < len) {
      if (!c->pend) c->pend = sl_xcalloc(1, sizeof *c->pend);
      sl_sbuf_append(c->pend, data + n, len - n);
    }
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
    if (!c->wq.n) sl_http_respond(c, status, "text/plain", msg, strlen(msg), NULL);
    c->close_after_write = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    sl_conn_flush(c);
    return;
  }
  if (c->parser.upgrade && c->mode == SL_CONN_HTTP && !c->closing && !c->close_after_write) {
    /* An upgrade request that nobody accepted has already been answered. */
    c->close_after_write = 1;
    sl_conn_flush(c);
  }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  sl_conn *c = sl_container_of((uv_tcp_t *)s, sl_conn, tcp);
  if (nread < 0) {
    sl_conn_close(c);
    return;
  }
  if (nread == 0 || c->closing) return;
  if (c->mode == SL_CONN_UPGRADED) {
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
    http_feed(c, p->data, p->len);
    sl_sbuf_free(p);
    free(p);
  }
}

static void on_connection(uv_stream_t *l, int status) {
  sl_server *srv = l->data;
  if (status < 0) {
    sl_log_warn("accept failed on %s: %s", srv->cfg->name, uv_strerror(status));
    return;
  }
  sl_conn *c = sl_xcalloc(1, sizeof *c);
  c->srv = srv;
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
  sl_conn *c = sl_xcalloc(1, sizeof *c);
  c->srv = srv;
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
  uv_tcp_nodelay(&c->tcp, 1);
  if (srv->cfg->socket_sndbuf > 0) {
    int v = (int)srv->cfg->socket_sndbuf;
    uv_send_buffer_size((uv_handle_t *)&c->tcp, &v);
  }
  http_parser_init(&c->parser, HTTP_REQUEST);
  timeout_arm(c, SL_HEADER_TIMEOUT_MS);
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

/* sl_conn_remote: see net.h. */
const char *sl_conn_remote(sl_conn *c, char *buf, size_t len) {
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  buf[0] = 0;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    if (ss.ss_family == AF_INET) uv_ip4_name((struct sockaddr_in *)&ss, buf, len);
    else if (ss.ss_family == AF_INET6) uv_ip6_name((struct sockaddr_in6 *)&ss, buf, len);
  }
  return buf;
}

/* sl_server_listen: see net.h. */
int sl_server_listen(sl_server *srv, sl_request_cb on_request) {
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
  struct sockaddr_storage addr;
  const char *host = srv->cfg->host ? srv->cfg->host : "0.0.0.0";
  int r;
  if (strchr(host, ':'))
    r = uv_ip6_addr(host, srv->cfg->port, (struct sockaddr_in6 *)&addr);
  else
    r = uv_ip4_addr(strcmp(host, "localhost") == 0 ? "127.0.0.1" : host, srv->cfg->port,
                    (struct sockaddr_in *)&addr);
  if (r) return r;
  srv->on_request = on_request;
  uv_tcp_init(srv->gw->loop, &srv->listener);
  srv->listener.data = srv;
  r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
  if (!r) r = uv_listen((uv_stream_t *)&srv->listener, 4096, on_connection);
  if (r) {
    uv_close((uv_handle_t *)&srv->listener, NULL);
    return r;
  }
  struct sockaddr_storage bound;
  int blen = sizeof bound;
  uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
  srv->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
  srv->listening = true;
  return 0;
}

/* ---- writing --------------------------------------------------------------------------- */

static void write_cb(uv_write_t *w, int status);

/* Drop `n` bytes from the front of the write queue. */
static void wq_advance(sl_conn *c, size_t n) {
  c->wq_bytes -= n;
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

static void after_drain(sl_conn *c) {
  if (c->closing) return;
  if (c->wq.n == 0) {
    if (c->close_after_write) {
      sl_conn_close(c);
      return;
    }
    if (c->mode == SL_CONN_HTTP && !c->held) {
      if (c->paused) sl_conn_resume(c);
      if (!c->req || c->req->complete) timeout_arm(c, SL_IDLE_TIMEOUT_MS);
    }
  }
}

/* sl_conn_flush: see net.h. */
void sl_conn_flush(sl_conn *c) {
  uv_buf_t iov[SL_IOV_BATCH];
  if (c->closing || c->writing) return;
  while (c->wq.n) {
    unsigned n = wq_iov(c, iov, SL_IOV_BATCH);
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
  size_t n = 0;
  for (uint32_t i = 0; i < c->inflight; i++) n += sl_mq_bytes_at(&c->wq, i);
  n -= c->head_off;
  c->inflight = 0;
  wq_advance(c, n);
  if (c->ops && c->ops->on_drain) c->ops->on_drain(c); /* e.g. a session refills from lanes */
  else sl_conn_flush(c);
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
  bool keep = c->req && c->req->complete && http_should_keep_alive(&c->parser) && !c->close_after_write;
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
    if (*s == '"' || *s == '\\') sl_sbuf_printf(&b, "\\%c", *s);
    else if ((unsigned char)*s < 0x20) sl_sbuf_printf(&b, "\\u%04x", (unsigned char)*s);
    else sl_sbuf_append(&b, s, 1);
  }
  sl_sbuf_puts(&b, "\"}}");
  sl_http_respond(c, status, "application/json", b.data, b.len, NULL);
  sl_sbuf_free(&b);
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
  req_free(c->req);
  if (c->pend) {
    sl_sbuf_free(c->pend);
    free(c->pend);
  }
  free(c);
}

/* sl_conn_close: see net.h. Tells the owner first (eio: the session lost its transport). */
void sl_conn_close(sl_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  timeout_disarm(c);
  sl_list_del(&c->link);
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
