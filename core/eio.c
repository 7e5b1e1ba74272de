/* eio.c - Engine.IO v4 sessions: handshake, HTTP long-polling, WebSocket, the upgrade from
 * polling to WebSocket, and the heartbeat. See shared/PROTOCOL.md section 2.
 *
 * A session outlives the HTTP requests that carry it. Outbound packets go either straight
 * to the WebSocket connection's write queue (transport WS) or into the session's packet
 * queue `pq` until a polling GET takes them all. Deliveries wait in lanes (delivery.c) and
 * are pulled in by sl_session_flush only while the unsent bytes are under the high-water
 * mark, which is how a slow client's memory stays bounded. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>
#include "eio.h"
#include "sio.h"
#include "sio_codec.h"
#include "heap.h"
#include "msg.h"
#include "net.h"
#include "sl_util.h"
#include "ws.h"
#include "window.h"
#include "cors.h"

static void session_timer_arm(sl_session *s);

/* The layer above this session (Socket.IO, or the raw endpoint). */
static inline const sl_eio_handler *handler(const sl_session *s) {
  return s->srv->eio_handlers[s->raw];
}
static void eio_ws_message(sl_conn *c, const uint8_t *data, size_t len, bool binary);
static void eio_conn_lost(sl_conn *c);

/* A write finished on a session's WebSocket: refill from the lanes and write (the raw
 * endpoint has no lanes: just write). */
static void eio_ws_drain(sl_conn *c) {
  sl_session *s = sl_conn_data(c);
  if (s && !s->raw && s->ws == c)
    sl_session_flush(s);
  else
    sl_conn_flush(c);
}

/* What net and ws tell eio about its connections: a session's WebSocket (probing or
 * carrying it), and a held polling GET (only its loss matters). */
static const sl_ws_handler eio_ws = SL_WS_HANDLER(eio_ws_message, eio_ws_drain, eio_conn_lost);
static const sl_conn_ops eio_get_ops = {.on_close = eio_conn_lost};

/* ---- small helpers ------------------------------------------------------------------- */

/* Find query parameter `key` in url; copies its value (truncated to outlen-1) into out. */
static bool query_get(const char *url, const char *key, char *out, size_t outlen) {
  const char *q = strchr(url, '?');
  if (!q) return false;
  size_t kl = strlen(key);
  const char *p = q + 1;
  while (*p) {
    const char *e = strchr(p, '&');
    if (!e) e = p + strlen(p);
    if ((size_t)(e - p) > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
      size_t vl = (size_t)(e - p) - kl - 1;
      if (vl >= outlen) vl = outlen - 1;
      memcpy(out, p + kl + 1, vl);
      out[vl] = 0;
      return true;
    }
    if ((size_t)(e - p) == kl && strncmp(p, key, kl) == 0) {
      out[0] = 0;
      return true;
    }
    p = *e ? e + 1 : e;
  }
  return false;
}

/* The server's cors policy for this response (nothing without the `cors` key). */
static void cors_headers(sl_conn *c, sl_sbuf *b) {
  sl_cors_headers(&c->srv->cfg->cors, c->req ? c->req->origin : NULL, b);
}

/* Refuse a request with status and the Engine.IO error JSON {"code":code,"message":...}
 * (message JSON-escaped); an upgrade request is closed after the answer, as engine.io's
 * abortUpgrade does. */
static void eio_refuse(sl_conn *c, bool upgrade, int status, int code, const char *message) {
  sl_sbuf body = {0}, h = {0};
  sl_sbuf_printf(&body, "{\"code\":%d,\"message\":\"", code);
  for (const char *p = message; *p; p++) {
    if (*p == '"' || *p == '\\')
      sl_sbuf_printf(&body, "\\%c", *p);
    else if ((unsigned char)*p < 0x20)
      sl_sbuf_printf(&body, "\\u%04x", (unsigned char)*p);
    else
      sl_sbuf_append(&body, p, 1);
  }
  sl_sbuf_puts(&body, "\"}");
  if (upgrade)
    c->close_after_write = 1;
  else
    cors_headers(c, &h);
  sl_http_respond(c, status, "application/json", body.data, body.len, h.data);
  sl_sbuf_free(&body);
  sl_sbuf_free(&h);
}

static void eio_error(sl_conn *c, bool upgrade, int code, const char *message) {
  if (upgrade) {
    /* Like the reference: a plain 400, then the socket is dropped. */
    c->close_after_write = 1;
    sl_http_respond(c, 400, "text/plain", "Bad Request", 11, NULL);
    return;
  }
  char body[128];
  int n = snprintf(body, sizeof body, "{\"code\":%d,\"message\":\"%s\"}", code, message);
  sl_sbuf h = {0};
  cors_headers(c, &h);
  sl_http_respond(c, code == 4 ? 403 : 400, "application/json", body, (size_t)n, h.data);
  sl_sbuf_free(&h);
}

/* A handshake refused by a limit: 503 with {"error":{code,message}} (CORS headers, so a
 * browser's polling client can read it). An upgrade request is not upgraded and its
 * connection closes after the answer. */
static void eio_limit_refuse(sl_conn *c, bool upgrade, const char *code, const char *message) {
  char body[256];
  int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code,
                   message);
  sl_sbuf h = {0};
  cors_headers(c, &h);
  sl_sbuf_puts(&h, "Retry-After: 1\r\n");
  if (upgrade) c->close_after_write = 1;
  sl_http_respond(c, 503, "application/json", body, (size_t)n, h.data);
  sl_sbuf_free(&h);
}

/* May c open a new session? maxSessions, then the peer address's handshake rate (net). */
static bool session_admit(sl_conn *c, bool upgrade) {
  sl_server *srv = c->srv;
  if (srv->sessions.n >= (size_t)srv->cfg->max_sessions) {
    sl_server_count_refusal(srv, SL_REFUSE_SESSIONS);
    sl_log_debug("refusing a handshake: maxSessions reached");
    eio_limit_refuse(c, upgrade, "TOO_MANY_SESSIONS",
                     "the server has maxSessions sessions, try again later");
    return false;
  }
  if (!sl_conn_admit_handshake(c)) {
    sl_log_debug("refusing a handshake: maxHandshakesPerSecondPerAddress reached");
    eio_limit_refuse(c, upgrade, "RATE_LIMITED",
                     "too many handshakes from this address, try again later");
    return false;
  }
  return true;
}

/* The server's allow_request hook judges a handshake (socket.io's allowRequest). Returns
 * true to go on; false when c was answered with the hook's refusal. */
static bool handshake_allowed(sl_conn *c, bool upgrade) {
  sl_server *srv = c->srv;
  if (!srv->hooks.fn.allow_request) return true;
  sl_req *r = c->req;
  const char *url = r->url.data ? r->url.data : "/";
  size_t plen = strcspn(url, "?");
  char *path = sl_xstrndup(url, plen);
  const char **hv = sl_xcalloc(2 * r->nheaders + 1, sizeof *hv);
  const char *p = r->headers.data;
  for (size_t i = 0; i < 2 * r->nheaders; i++) {
    hv[i] = p;
    p += strlen(p) + 1;
  }
  char remote[64];
  sluice_request req = {
      .method = http_method_str(c->parser.method),
      .path = path,
      .query = url[plen] ? url + plen + 1 : "",
      .remote_address = sl_conn_remote(c, remote, sizeof remote),
      .headers = hv,
      .nheaders = r->nheaders,
  };
  int status = 403;
  char msg[256] = "Forbidden";
  int ok = srv->hooks.fn.allow_request(srv->hooks.ud[SL_HK_ALLOW_REQUEST], &req, &status, msg,
                                       sizeof msg);
  free(hv);
  free(path);
  if (ok) return true;
  srv->gw->eio_refused_allow++;
  msg[sizeof msg - 1] = 0;
  if (status < 400 || status > 599) status = 403;
  eio_refuse(c, upgrade, status, 4, msg);
  return false;
}

/* sl_session_high_water: see eio.h. */
size_t sl_session_high_water(const sl_session *s) {
  int64_t v = s->srv->cfg->socket_high_water;
  return v > 0 ? (size_t)v : 65536;
}

/* sl_session_unsent: see eio.h. */
size_t sl_session_unsent(const sl_session *s) {
  if (s->transport == SL_TR_WS) return s->ws ? s->ws->wq_bytes : 0;
  if (!s->poll) return 0;
  return s->poll->pq_bytes + (s->poll->get ? s->poll->get->wq_bytes : 0);
}

/* sl_session_mark_dirty: see eio.h. */
void sl_session_mark_dirty(sl_session *s) {
  if (s->dirty == 1 || s->state == SL_ST_CLOSED) return;
  if (s->dirty) sl_list_del(&s->dlink); /* on a window: it closes early for s */
  s->dirty = 1;
  sl_list_push(&s->srv->gw->dirty, &s->dlink);
}

/* sl_session_defer: see eio.h. */
void sl_session_defer(sl_session *s, uint32_t ms) {
  if (s->dirty || s->state == SL_ST_CLOSED) return;
  if (!ms) {
    sl_session_mark_dirty(s);
    return;
  }
  s->dirty = 2;
  sl_window_add(s->srv->gw, &s->dlink, ms);
}

/* ---- output -------------------------------------------------------------------------- */

/* Keep m for the next polling GET. */
static void pq_push(sl_poll *p, sl_msg *m) {
  p->pq_bytes += m->len;
  sl_mq_push(&p->pq, m, true);
}

/* sl_session_queue: see eio.h. */
void sl_session_queue(sl_session *s, sl_msg *m) {
  if (s->state == SL_ST_CLOSED || (s->transport == SL_TR_WS ? !s->ws : !s->poll)) {
    sl_msg_unref(m);
    return;
  }
  if (s->transport == SL_TR_WS)
    sl_conn_queue(s->ws, m, false);
  else
    pq_push(s->poll, m);
}

/* sl_session_send: see eio.h. Control packets (handshake replies, acks, pings) bypass the
 * lanes but still respect transport order. */
void sl_session_send(sl_session *s, sl_msg *m) {
  if (s->state == SL_ST_CLOSED) {
    sl_msg_unref(m);
    return;
  }
  sl_session_queue(s, m);
  sl_session_mark_dirty(s);
}

static void send_text(sl_session *s, const char *text) {
  sl_session_send(s, sl_msg_packet_new(text, strlen(text), false, SL_MK_CONTROL));
}

/* Answer the held polling GET with everything in pq. */
static void poll_respond(sl_session *s) {
  sl_poll *pl = s->poll;
  sl_conn *c = pl ? pl->get : NULL;
  if (!c || !pl->pq.n) return;
  size_t total = 0;
  /* Binary packets travel as "b" + base64 in polling payloads: re-encode those. */
  for (uint32_t i = 0; i < pl->pq.n; i++) {
    sl_msg *m = sl_mq_at(&pl->pq, i);
    total += m->binary ? 1 + sl_b64_enclen(m->len) : m->len;
    if (i) total++;
  }
  sl_sbuf h = {0};
  sl_sbuf_printf(&h,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n"
                 "Content-Length: %zu\r\nCache-Control: no-store\r\nConnection: %s\r\n",
                 total, http_should_keep_alive(&c->parser) ? "keep-alive" : "close");
  cors_headers(c, &h);
  sl_sbuf_puts(&h, "\r\n");
  if (!http_should_keep_alive(&c->parser)) c->close_after_write = 1;
  sl_conn_queue(c, sl_msg_raw_new(h.data, h.len), true);
  sl_sbuf_free(&h);
  bool first = true;
  while (pl->pq.n) {
    sl_msg *m = sl_mq_pop(&pl->pq);
    if (!first) sl_conn_queue(c, sl_msg_rs, true);
    first = false;
    if (m->binary) {
      sl_msg *b = sl_msg_new(1 + sl_b64_enclen(m->len), SL_MK_RAW);
      uint8_t *p = sl_msg_packet(b);
      p[0] = 'b';
      b->len = (uint32_t)(1 + sl_b64_encode(sl_msg_packet(m), m->len, (char *)p + 1));
      sl_msg_unref(m);
      m = b;
    }
    sl_conn_queue(c, m, true);
  }
  pl->pq_bytes = 0;
  pl->get = NULL;
  c->held = 0;
  sl_conn_set_data(c, NULL);
  sl_conn_flush(c);
}

/* sl_session_flush: see eio.h. */
void sl_session_flush(sl_session *s) {
  if (s->state == SL_ST_CLOSED) return;
  bool (*pull)(sl_session *, size_t) = handler(s)->on_pull;
  size_t hwm = sl_session_high_water(s);
  for (int round = 0; round < 64; round++) {
    size_t unsent = sl_session_unsent(s);
    bool pulled = false;
    if (unsent < hwm && pull) pulled = pull(s, hwm - unsent);
    if (s->transport == SL_TR_WS) {
      if (!s->ws) return;
      s->ws->fed |= pulled; /* keeps its write ring (net.h) until the next heartbeat */
      sl_conn_flush(s->ws);
      if (s->state == SL_ST_CLOSED || !s->ws || s->ws->writing || !pulled) return;
    } else {
      poll_respond(s);
      return;
    }
  }
  sl_session_mark_dirty(s); /* more to do: continue next iteration, let others run */
}

/* ---- session lifecycle --------------------------------------------------------------- */

/* ---- session deadlines: one min-heap and one uv timer for every session ------------ */

static void sess_timer_cb(uv_timer_t *t);

static void sess_timer_rearm(sl_gateway *gw) {
  if (!gw->sess_timer.loop || uv_is_closing((uv_handle_t *)&gw->sess_timer)) return;
  sl_heap_node *top = sl_heap_min(&gw->sheap);
  if (!top) {
    uv_timer_stop(&gw->sess_timer);
    return;
  }
  uint64_t now = uv_now(gw->loop), due = top->key;
  uv_timer_start(&gw->sess_timer, sess_timer_cb, due > now ? due - now : 0, 0);
}

/* sl_eio_start: see eio.h. */
void sl_eio_start(sl_gateway *gw) {
  uv_timer_init(gw->loop, &gw->sess_timer);
  gw->sess_timer.data = gw;
  uv_unref((uv_handle_t *)&gw->sess_timer);
}

/* sl_eio_free_dead: see eio.h. */
void sl_eio_free_dead(sl_gateway *gw) {
  while (gw->dead_sessions) {
    sl_session *s = gw->dead_sessions;
    gw->dead_sessions = s->next_dead;
    sl_strpool_put(&gw->remotes, s->remote);
    free(s->poll); /* its queue was cleared at the close */
    free(s->bearer);
    sl_pool_free(&gw->pool_session, s);
  }
}

static void conn_finish(sl_conn *c) {
  c->close_after_write = 1;
  if (!c->writing && c->wq.n == 0)
    sl_conn_close(c);
  else
    sl_conn_flush(c);
}

/* End the session (sl_session_close). Held GETs are answered ("1" close, or "6" when the
 * client itself asked to close), the WebSocket is closed after what is queued, the layer
 * above is told first (Socket.IO releases its sockets). Idempotent. */
static void session_close_ex(sl_session *s, const char *reason, bool client_close, bool fail) {
  if (s->state == SL_ST_CLOSED) return;
  sl_log_debug("session %s closed: %s", s->sid, reason);
  sl_poll *pl = s->poll;
  if (fail && pl && pl->get) {
    /* What the layer above queued to explain itself goes out first, then the close. */
    pq_push(pl, sl_msg_packet_new("1", 1, false, SL_MK_CONTROL));
    poll_respond(s);
  }
  handler(s)->on_close(s, reason);
  s->state = SL_ST_CLOSED;
  sl_hash_del(&s->srv->sessions, &s->hent);
  if (s->dirty) {
    sl_list_del(&s->dlink);
    s->dirty = 0;
  }
  if (pl) {
    sl_mq_clear(&pl->pq);
    pl->pq_bytes = 0;
  }
  if (pl && pl->get) {
    sl_conn *g = pl->get;
    pl->get = NULL;
    g->held = 0;
    sl_conn_set_data(g, NULL);
    const char *body = client_close ? "6" : "1";
    sl_http_respond(g, 200, "text/plain; charset=UTF-8", body, 1, NULL);
  }
  if (pl && pl->probe) {
    sl_conn *p = pl->probe;
    pl->probe = NULL;
    sl_conn_set_data(p, NULL);
    p->is_probe = 0;
    sl_conn_close(p);
  }
  if (s->ws) {
    sl_conn *w = s->ws;
    s->ws = NULL;
    sl_conn_set_data(w, NULL);
    if (fail)
      sl_ws_close(w, 1002, reason); /* after what is queued: the client reads why */
    else
      conn_finish(w);
  }
  sl_gateway *gw = s->srv->gw;
  bool was_top = sl_heap_min(&gw->sheap) == &s->hn;
  sl_heap_remove(&gw->sheap, &s->hn);
  if (was_top) sess_timer_rearm(gw);
  /* Freed at the next safe point: callers up the stack still look at s->state. */
  s->next_dead = gw->dead_sessions;
  gw->dead_sessions = s;
}

/* sl_session_close: see eio.h. */
void sl_session_close(sl_session *s, const char *reason) {
  session_close_ex(s, reason, false, false);
}

/* sl_session_fail: see eio.h. */
void sl_session_fail(sl_session *s, const char *reason) {
  session_close_ex(s, reason, false, true);
}

/* One session's deadline passed: pong overdue, connect timeout, or time to ping. */
static void session_deadline(sl_session *s, uint64_t now) {
  if (s->waiting_pong && now >= s->pong_due) {
    sl_session_close(s, "ping timeout");
    return;
  }
  if (!s->raw && !s->ever_joined &&
      now >= s->created_ms + (uint64_t)s->srv->cfg->connect_timeout_ms) {
    sl_session_close(s, "connect timeout");
    return;
  }
  if (!s->waiting_pong && now >= s->ping_due) {
    /* quiet since the last ping: the write ring goes when the ping is written (net.h fed) */
    if (s->ws) s->ws->fed = 0;
    send_text(s, "2");
    s->waiting_pong = 1;
    s->pong_due = now + (uint64_t)s->srv->cfg->ping_timeout_ms;
  }
  session_timer_arm(s);
}

static void sess_timer_cb(uv_timer_t *t) {
  sl_gateway *gw = t->data;
  uint64_t now = uv_now(gw->loop);
  for (sl_heap_node *top; (top = sl_heap_min(&gw->sheap)) && top->key <= now;) {
    sl_session *s = sl_container_of(top, sl_session, hn);
    sl_heap_remove(&gw->sheap, top);
    session_deadline(s, now);
  }
  sess_timer_rearm(gw);
}

static void session_timer_arm(sl_session *s) {
  sl_gateway *gw = s->srv->gw;
  uint64_t due = s->waiting_pong ? s->pong_due : s->ping_due;
  if (!s->raw && !s->ever_joined) {
    uint64_t cd = s->created_ms + (uint64_t)s->srv->cfg->connect_timeout_ms;
    if (cd < due) due = cd;
  }
  /* remove + insert (not update): equal deadlines keep the order they always had */
  sl_heap_remove(&gw->sheap, &s->hn);
  s->hn.key = due;
  sl_heap_insert(&gw->sheap, &s->hn);
  if (sl_heap_min(&gw->sheap) == &s->hn) sess_timer_rearm(gw);
}

static sl_session *session_new(sl_server *srv, sl_conn *c, int transport, bool raw) {
  sl_session *s = sl_pool_alloc(&srv->gw->pool_session);
  s->srv = srv;
  s->transport = (uint8_t)transport;
  s->raw = raw;
  if (transport == SL_TR_POLLING) s->poll = sl_xcalloc(1, sizeof *s->poll);
  do { sl_random_id(s->sid, 20); } while (sl_hash_get(&srv->sessions, s->sid));
  sl_hash_put(&srv->sessions, &s->hent, s->sid);
  sl_list_init(&s->ready);
  char addr[64];
  s->remote = sl_strpool_get(&srv->gw->remotes, sl_conn_remote(c, addr, sizeof addr));
  if (c->req && c->req->authorization) {
    const char *a = c->req->authorization;
    if (strncasecmp(a, "bearer ", 7) == 0) {
      a += 7;
      while (*a == ' ') a++;
      size_t l = strlen(a);
      while (l && a[l - 1] == ' ') l--;
      if (l) s->bearer = sl_xstrndup(a, l);
    }
  }
  sl_heap_node_init(&s->hn);
  s->created_ms = uv_now(srv->gw->loop);
  s->ping_due = s->created_ms + (uint64_t)srv->cfg->ping_interval_ms;
  session_timer_arm(s);
  return s;
}

static void open_packet(sl_session *s, sl_sbuf *b) {
  const sl_server_config *cfg = s->srv->cfg;
  sl_sbuf_printf(b,
                 "0{\"sid\":\"%s\",\"upgrades\":%s,\"pingInterval\":%lld,\"pingTimeout\":%lld,"
                 "\"maxPayload\":%lld}",
                 s->sid, s->transport == SL_TR_POLLING ? "[\"websocket\"]" : "[]",
                 (long long)cfg->ping_interval_ms, (long long)cfg->ping_timeout_ms,
                 (long long)cfg->max_payload);
}

static void session_opened(sl_session *s) {
  const sl_eio_handler *h = handler(s);
  if (h->on_open) h->on_open(s);
}

/* ---- inbound packets ----------------------------------------------------------------- */

/* Handle one Engine.IO packet from the client. Returns false when the session was closed. */
static bool handle_packet(sl_session *s, uint8_t *data, size_t len, bool binary) {
  if (binary) {
    handler(s)->on_message(s, data, len, true);
    return s->state != SL_ST_CLOSED;
  }
  eio_packet p;
  if (sl_eio_parse_text(data, len, &p) != 0) {
    sl_session_close(s, "parse error");
    return false;
  }
  switch (p.type) {
  case EIO_PONG:
    if (s->waiting_pong) {
      s->waiting_pong = 0;
      s->ping_due = uv_now(s->srv->gw->loop) + (uint64_t)s->srv->cfg->ping_interval_ms;
      session_timer_arm(s);
    }
    return true;
  case EIO_MESSAGE:
    handler(s)->on_message(s, p.data, p.len, p.binary);
    return s->state != SL_ST_CLOSED;
  case EIO_CLOSE: session_close_ex(s, "client close", true, false); return false;
  case EIO_NOOP: return true;
  case EIO_PING: sl_session_close(s, "invalid heartbeat direction"); return false;
  default: /* open, upgrade outside an upgrade: invalid */
    sl_session_close(s, "invalid packet");
    return false;
  }
}

/* A WebSocket message on a connection bound to a session (or probing one). */
static void eio_ws_message(sl_conn *c, const uint8_t *data, size_t len, bool binary) {
  sl_session *s = sl_conn_data(c);
  if (!s) return;
  uint8_t *d = (uint8_t *)data; /* wslay's buffer, ours to modify until the callback returns */
  if (c->is_probe) {
    if (!binary && len == 6 && memcmp(d, "2probe", 6) == 0) {
      sl_conn_send(c, sl_msg_packet_new("3probe", 6, false, SL_MK_CONTROL), false);
      /* The client now waits for its pending GET to finish: answer it with a noop. */
      sl_poll *pl = s->poll; /* a probing session polls */
      if (pl->get && !pl->pq.n) {
        pq_push(pl, sl_msg_packet_new("6", 1, false, SL_MK_CONTROL));
        poll_respond(s);
      }
      return;
    }
    if (!binary && len == 1 && d[0] == '5') {
      /* Upgrade complete: the WebSocket carries the session from now on. */
      sl_poll *pl = s->poll;
      c->is_probe = 0;
      pl->probe = NULL;
      s->state = SL_ST_OPEN;
      if (pl->get) {
        if (!pl->pq.n) pq_push(pl, sl_msg_packet_new("6", 1, false, SL_MK_CONTROL));
        poll_respond(s);
      }
      s->transport = SL_TR_WS;
      s->ws = c;
      while (pl->pq.n) sl_conn_queue(c, sl_mq_pop(&pl->pq), false);
      sl_mq_clear(&pl->pq);
      free(pl); /* polling is over for this session */
      s->poll = NULL;
      sl_session_flush(s);
      return;
    }
    /* Anything else on a probing WebSocket closes that WebSocket only. */
    s->poll->probe = NULL;
    s->state = SL_ST_OPEN;
    sl_conn_set_data(c, NULL);
    c->is_probe = 0;
    sl_conn_close(c);
    return;
  }
  if (s->ws != c) return;
  handle_packet(s, d, len, binary);
}

/* A connection bound to a session (its WebSocket, a probe, a held GET) is closing.
 * Idempotent: the connection forgets its session here. */
static void eio_conn_lost(sl_conn *c) {
  sl_session *s = sl_conn_data(c);
  sl_conn_set_data(c, NULL);
  if (!s) return;
  if (c->is_probe) {
    c->is_probe = 0;
    if (s->poll && s->poll->probe == c) {
      s->poll->probe = NULL;
      if (s->state == SL_ST_UPGRADING) s->state = SL_ST_OPEN;
    }
    return;
  }
  if (s->poll && s->poll->get == c) {
    s->poll->get = NULL;
    c->held = 0;
    return;
  }
  if (s->ws == c) {
    s->ws = NULL;
    sl_session_close(s, "transport close");
  }
}

/* ---- HTTP entry point ---------------------------------------------------------------- */

static void handle_post(sl_conn *c, sl_session *s) {
  sl_req *r = c->req;
  if (r->too_big) {
    c->close_after_write = 1;
    sl_http_respond(c, 413, "text/plain", "Payload Too Large", 17, NULL);
    sl_session_close(s, "payload too large");
    return;
  }
  if (r->content_type && strncasecmp(r->content_type, "application/octet-stream", 24) == 0) {
    eio_error(c, false, 3, "Bad request");
    sl_session_close(s, "binary POST");
    return;
  }
  if (r->body.len && !sl_utf8_valid((const uint8_t *)r->body.data, r->body.len)) {
    eio_error(c, false, 3, "Bad request");
    sl_session_close(s, "invalid UTF-8 in a polling payload");
    return;
  }
  sl_sbuf h = {0};
  cors_headers(c, &h);
  /* Answer first: packets below may close the session, the POST still succeeded. */
  sl_http_respond(c, 200, "text/html", "ok", 2, h.data);
  sl_sbuf_free(&h);
  uint8_t *body = (uint8_t *)r->body.data;
  size_t pos = 0;
  const uint8_t *rec;
  size_t rl;
  while (s->state != SL_ST_CLOSED && sl_eio_payload_next(body, r->body.len, &pos, &rec, &rl)) {
    if (!handle_packet(s, (uint8_t *)rec, rl, false)) break;
  }
}

/* The CORS part of a request under the Engine.IO path: a preflight is answered here, an
 * origin outside cors.origins refused. Returns true when the request goes on. */
static bool cors_gate(sl_conn *c, bool upgrade) {
  sl_server *srv = c->srv;
  const sl_cors_config *cors = &srv->cfg->cors;
  if (c->parser.method == HTTP_OPTIONS && !upgrade) {
    /* A CORS preflight, answered as the cors package does (204); without `cors` there is
     * no CORS at all, and OPTIONS is no Engine.IO method. */
    if (!cors->set) {
      eio_error(c, false, 2, "Bad handshake method");
      return false;
    }
    sl_sbuf h = {0};
    sl_cors_preflight(cors, c->req->origin, c->req->acr_headers, &h);
    sl_http_respond(c, 204, "text/plain", "", 0, h.data);
    sl_sbuf_free(&h);
    return false;
  }
  if (!sl_cors_origin_ok(cors, c->req->origin)) {
    char msg[300];
    snprintf(msg, sizeof msg, "Forbidden: origin %.200s is not allowed (cors.origins)",
             c->req->origin);
    srv->gw->eio_refused_origin++;
    eio_refuse(c, upgrade, 403, 4, msg);
    return false;
  }
  return true;
}

/* A request for an existing session (sid in the query): polling GET/POST, or the WebSocket
 * of an upgrade. */
static void session_request(sl_conn *c, bool upgrade, bool raw, const char *sid, bool is_ws) {
  sl_server *srv = c->srv;
  sl_hent *e = sl_hash_get(&srv->sessions, sid);
  sl_session *s = e ? sl_container_of(e, sl_session, hent) : NULL;
  if (!s || s->raw != raw) {
    eio_error(c, upgrade, 1, "Session ID unknown");
    return;
  }
  if (is_ws) {
    if (s->transport == SL_TR_WS || s->poll->probe) {
      /* A second WebSocket for a session that has one (the reference accepts it, then
       * closes it): complete the handshake, bind it to nothing, close it. The session
       * goes on, on its own WebSocket. */
      sl_log_debug("session %s: a second WebSocket for it closed", s->sid);
      if (!sl_ws_handshake(c, &eio_ws)) return;
      sl_conn_set_data(c, NULL);
      sl_ws_close(c, 1008, "session already has a WebSocket");
      return;
    }
    if (s->state != SL_ST_OPEN) {
      eio_error(c, true, 3, "Bad request");
      return;
    }
    if (!sl_ws_handshake(c, &eio_ws)) return;
    c->is_probe = 1;
    sl_conn_set_data(c, s);
    s->poll->probe = c;
    s->state = SL_ST_UPGRADING;
    sl_conn_flush(c);
    return;
  }
  if (s->transport != SL_TR_POLLING) {
    /* Polling after the upgrade: refused, and only this request (a late request of the
     * client's old transport must not take the upgraded session down). */
    sl_log_debug("session %s: a polling request after the upgrade refused", s->sid);
    eio_error(c, false, 3, "Bad request");
    return;
  }
  if (c->parser.method == HTTP_GET) {
    sl_poll *pl = s->poll;
    if (pl->get) {
      eio_error(c, false, 3, "Bad request");
      sl_session_close(s, "overlapping GET");
      return;
    }
    pl->get = c;
    c->held = 1;
    sl_conn_set_data(c, s);
    c->ops = &eio_get_ops;
    if (s->state == SL_ST_UPGRADING && !pl->pq.n)
      pq_push(pl, sl_msg_packet_new("6", 1, false, SL_MK_CONTROL));
    sl_session_flush(s);
    return;
  }
  if (c->parser.method == HTTP_POST) {
    handle_post(c, s);
    return;
  }
  eio_error(c, false, 2, "Bad handshake method");
  return;
}

/* A handshake: a new session over polling or WebSocket. */
static void handshake(sl_conn *c, bool upgrade, bool raw, const char *eio, bool is_ws) {
  sl_server *srv = c->srv;
  /* Handshake. Draining (sluice_drain): this node takes no new session, the client's
   * reconnection goes elsewhere (a load balancer's next node). */
  if (srv->gw->draining) {
    sl_http_json_error(c, 503, "DRAINING", "this server is shutting down; connect to another node");
    return;
  }
  if (c->parser.method != HTTP_GET) {
    eio_error(c, upgrade, 2, "Bad handshake method");
    return;
  }
  if (!handshake_allowed(c, upgrade)) return;
  if (!eio || strcmp(eio, "4") != 0) {
    eio_error(c, upgrade, 5, "Unsupported protocol version");
    return;
  }
  if (!session_admit(c, upgrade)) return;
  sl_sbuf b = {0};
  if (is_ws) {
    if (!sl_ws_handshake(c, &eio_ws)) return;
    sl_session *s = session_new(srv, c, SL_TR_WS, raw);
    s->ws = c;
    sl_conn_set_data(c, s);
    open_packet(s, &b);
    sl_conn_queue(c, sl_msg_packet_new(b.data, b.len, false, SL_MK_CONTROL), false);
    sl_sbuf_free(&b);
    sl_conn_flush(c);
    session_opened(s);
    return;
  }
  sl_session *s = session_new(srv, c, SL_TR_POLLING, raw);
  open_packet(s, &b);
  sl_sbuf h = {0};
  cors_headers(c, &h);
  sl_sbuf_puts(&h, "Cache-Control: no-store\r\n");
  sl_http_respond(c, 200, "text/plain; charset=UTF-8", b.data, b.len, h.data);
  sl_sbuf_free(&h);
  sl_sbuf_free(&b);
  session_opened(s);
}

/* sl_eio_http: see eio.h. */
void sl_eio_http(sl_conn *c, bool upgrade) {
  sl_server *srv = c->srv;
  const char *url = c->req->url.data ? c->req->url.data : "/";
  bool raw = !(strncmp(url, "/socket.io", 10) == 0);
  if (raw && !srv->cfg->eio_path) {
    eio_error(c, upgrade, 0, "Transport unknown");
    return;
  }
  if (!cors_gate(c, upgrade)) return;
  char eio[8] = "", transport[16] = "", sid[32] = "";
  bool has_eio = query_get(url, "EIO", eio, sizeof eio);
  bool has_tr = query_get(url, "transport", transport, sizeof transport);
  bool has_sid = query_get(url, "sid", sid, sizeof sid);
  bool is_ws = has_tr && strcmp(transport, "websocket") == 0;
  bool is_poll = has_tr && strcmp(transport, "polling") == 0;
  if (!is_ws && !is_poll) {
    eio_error(c, upgrade, 0, "Transport unknown");
    return;
  }
  if (is_poll && srv->cfg->websocket_only) {
    eio_error(c, upgrade, 0, "Transport unknown");
    return;
  }
  if (is_ws && !upgrade) {
    eio_error(c, false, 3, "Bad request");
    return;
  }
  if (has_sid) {
    session_request(c, upgrade, raw, sid, is_ws);
    return;
  }
  handshake(c, upgrade, raw, has_eio ? eio : NULL, is_ws);
}
