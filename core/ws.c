/* ws.c - WebSocket (RFC 6455) on top of a connection: the handshake and inbound frames.
 *
 * Inbound frames are parsed by wslay (Debian's libwslay 1.1.1), driven through its callbacks:
 * recv_callback hands it the bytes libuv just read, send_callback appends the control frames
 * it produces (pong, close) to our write queue, on_msg_recv_callback delivers whole messages.
 * Outbound data frames never go through wslay: they are pre-built once per message
 * (sl_msg_frame) and written directly.
 *
 * A wslay context costs several KiB, so a connection borrows one from a pool only while it
 * reads: a tiny frame-boundary tracker (fh/fhave/fleft/frag in sl_conn) tells when the
 * connection is between messages again, and the context goes back to the pool. An idle
 * WebSocket therefore holds no wslay memory.
 *
 * Memory of a partial message is charged to the server's inbound budget (sl_conn_inbound):
 * the borrowed context, plus what wslay keeps for the message — for each data frame a chunk
 * (malloc'd at the frame header) and its bookkeeping, and the payload bytes read so far. The
 * tracker counts those (fmsg) before wslay sees the bytes, so a read that would go over the
 * budget is refused before anything is buffered. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include "ws.h"
#include "msg.h"
#include "net.h"
#include "sl_util.h"

#define WS_POOL_MAX 256
/* Budget cost of a borrowed wslay context (two 4 KiB buffers and its queues) and of each
 * data frame of a message wslay buffers (a chunk struct, a queue cell, malloc overhead). */
#define WS_SLOT_COST 10240
#define WS_FRAME_COST 96
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

typedef struct sl_ws_slot {
  wslay_event_context_ptr ctx;
  sl_conn *conn;
} sl_ws_slot;

static sl_ws_slot *pool[WS_POOL_MAX];

/* The handler of an upgraded connection: c->ops points at its first member. */
static const sl_ws_handler *handler(const sl_conn *c) {
  return (const sl_ws_handler *)(const void *)c->ops;
}
static int pool_n;

/* The bytes of the read being handed to wslay (one read at a time on the loop thread, so
 * they need not live in every connection). */
static const uint8_t *cur_buf;
static size_t cur_len, cur_pos;

static ssize_t recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user) {
  (void)flags;
  sl_ws_slot *slot = user;
  sl_conn *c = slot->conn;
  (void)c;
  size_t avail = cur_len - cur_pos;
  if (avail == 0) {
    wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    return -1;
  }
  if (len > avail) len = avail;
  memcpy(buf, cur_buf + cur_pos, len);
  cur_pos += len;
  return (ssize_t)len;
}

static ssize_t send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user) {
  (void)ctx;
  (void)flags;
  sl_ws_slot *slot = user;
  sl_conn_queue(slot->conn, sl_msg_raw_new(data, len), true);
  return (ssize_t)len;
}

static void msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user) {
  (void)ctx;
  sl_ws_slot *slot = user;
  sl_conn *c = slot->conn;
  if (c->closing) return;
  if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
    if (c->ws_closing) return;
    handler(c)->on_message(c, arg->msg, arg->msg_length, arg->opcode == WSLAY_BINARY_FRAME);
  } else if (arg->opcode == WSLAY_CONNECTION_CLOSE) {
    c->ws_closing = 1;
  }
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = recv_cb,
    .send_callback = send_cb,
    .on_msg_recv_callback = msg_cb,
};

static sl_ws_slot *slot_borrow(sl_conn *c) {
  sl_ws_slot *s;
  if (pool_n) {
    s = pool[--pool_n];
  } else {
    s = sl_xcalloc(1, sizeof *s);
    if (wslay_event_context_server_init(&s->ctx, &ws_callbacks, s) != 0) {
      free(s);
      return NULL;
    }
  }
  s->conn = c;
  wslay_event_config_set_max_recv_msg_length(s->ctx, (uint64_t)c->srv->cfg->max_payload);
  return s;
}

static void slot_free(sl_ws_slot *s) {
  wslay_event_context_free(s->ctx);
  free(s);
}

/* Give the connection's wslay context back (or free it when its state can't be trusted).
 * Deferred while wslay is running for this connection. */
static void ws_release(sl_conn *c) {
  if (!c->ws || c->in_ws) return;
  sl_ws_slot *s = c->ws;
  c->ws = NULL;
  bool clean = !c->closing && !c->ws_closing && c->fhave == 0 && c->fleft == 0 && !c->frag &&
               wslay_event_get_queued_msg_count(s->ctx) == 0;
  if (clean && pool_n < WS_POOL_MAX) {
    s->conn = NULL;
    pool[pool_n++] = s;
  } else {
    slot_free(s);
  }
}

/* Advance the frame-boundary tracker over bytes the peer sent. Returns false when a frame
 * header announces more than maxPayload (wslay would only notice once payload arrives). */
static bool track(sl_conn *c, const uint8_t *d, size_t len) {
  size_t i = 0;
  while (i < len) {
    if (c->fleft) {
      size_t take = len - i < c->fleft ? len - i : (size_t)c->fleft;
      c->fleft -= take;
      i += take;
      /* fh[0] still holds the current frame's first byte */
      if ((c->fh[0] & 0x0f) <= 2) {
        c->fmsg += take;
        if (c->fleft == 0 && (c->fh[0] & 0x80)) c->fmsg = 0; /* the message is complete */
      }
      continue;
    }
    c->fh[c->fhave++] = d[i++];
    if (c->fhave < 2) continue;
    uint8_t l7 = c->fh[1] & 0x7f;
    size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->fh[1] & 0x80) ? 4 : 0);
    if (c->fhave < need) continue;
    uint64_t plen = l7;
    if (l7 == 126)
      plen = ((uint64_t)c->fh[2] << 8) | c->fh[3];
    else if (l7 == 127) {
      plen = 0;
      for (int k = 0; k < 8; k++) plen = (plen << 8) | c->fh[2 + k];
    }
    int op = c->fh[0] & 0x0f;
    bool fin = c->fh[0] & 0x80;
    if (plen > (uint64_t)c->srv->cfg->max_payload) return false;
    if ((op == 1 || op == 2) && !fin)
      c->frag = 1;
    else if (op == 0 && fin)
      c->frag = 0;
    if (op <= 2) {
      c->fmsg += WS_FRAME_COST;
      if (plen == 0 && fin) c->fmsg = 0;
    }
    c->fleft = plen;
    c->fhave = 0;
  }
  return true;
}

/* Refuse c's partial message: drop the wslay context and what it buffered, tell the
 * handler, send the close frame and linger. */
static void ws_refuse(sl_conn *c, uint16_t code, const char *reason) {
  bool was_closing = c->ws_closing;
  handler(c)->on_close(c);
  if (c->closing) return;
  if (!was_closing) {
    sl_conn_linger(c);
    sl_ws_close(c, code, reason);
  }
  c->ws_closing = 1;
  c->fmsg = 0;
  ws_release(c);
  (void)sl_conn_inbound(c, 0); /* shrinking: always succeeds */
  if (was_closing) sl_conn_close(c);
}

/* sl_ws_conn_limit: see ws.h. */
void sl_ws_conn_limit(sl_conn *c, int reason) {
  if (c->closing) return;
  if (reason == SL_REFUSE_PARTIAL_TIMEOUT)
    ws_refuse(c, 1008, "message timeout");
  else
    ws_refuse(c, 1013, "inbound buffers full, try again later");
}

/* sl_ws_feed: see ws.h. */
void sl_ws_feed(sl_conn *c, const uint8_t *data, size_t len) {
  if (c->closing) return;
  if (!c->ws) {
    c->ws = slot_borrow(c);
    if (!c->ws) {
      sl_conn_close(c);
      return;
    }
  }
  if (!track(c, data, len)) {
    ws_refuse(c, 1009, "message too big");
    return;
  }
  bool partial = c->fhave || c->fleft || c->frag;
  uint64_t want = partial ? WS_SLOT_COST + c->fmsg : 0;
  if (!sl_conn_inbound(c, want)) {
    sl_log_debug("refusing a WebSocket message: maxInboundBufferBytes spent");
    if (want > (uint64_t)c->srv->cfg->max_inbound_bytes)
      ws_refuse(c, 1009, "message too big");
    else
      ws_refuse(c, 1013, "inbound buffers full, try again later");
    return;
  }
  cur_buf = data;
  cur_len = len;
  cur_pos = 0;
  c->in_ws = 1;
  int r = wslay_event_recv(c->ws->ctx);
  if (r == 0 && !c->closing) wslay_event_send(c->ws->ctx);
  c->in_ws = 0;
  cur_buf = NULL;
  cur_len = cur_pos = 0;
  if (c->closing) {
    ws_release(c);
    return;
  }
  if (r != 0 || c->ws_closing || wslay_event_get_close_sent(c->ws->ctx)) {
    /* Protocol error, oversized message (wslay queued close 1009) or a close handshake:
     * send what wslay queued, then close. */
    if (r != 0) wslay_event_send(c->ws->ctx);
    c->ws_closing = 1;
    c->close_after_write = 1;
    uv_read_stop((uv_stream_t *)&c->tcp);
    handler(c)->on_close(c);
    sl_conn_flush(c);
    return;
  }
  sl_conn_flush(c);
  if (c->closing) return;
  if (partial) {
    sl_conn_deadline_start(c);
  } else {
    sl_conn_deadline_stop(c);
    ws_release(c);
  }
}

/* sl_ws_close: see ws.h. */
void sl_ws_close(sl_conn *c, uint16_t code, const char *reason) {
  if (c->closing || c->ws_closing) return;
  size_t rl = reason ? strlen(reason) : 0;
  if (rl > 120) rl = 120;
  uint8_t f[2 + 2 + 120];
  f[0] = 0x88;
  f[1] = (uint8_t)(2 + rl);
  f[2] = (uint8_t)(code >> 8);
  f[3] = (uint8_t)code;
  if (rl) memcpy(f + 4, reason, rl);
  c->ws_closing = 1;
  c->close_after_write = 1;
  uv_read_stop((uv_stream_t *)&c->tcp);
  sl_conn_send(c, sl_msg_raw_new(f, 4 + rl), true);
}

static bool header_has_token(const char *v, const char *tok) {
  if (!v) return false;
  size_t tl = strlen(tok);
  const char *p = v;
  while (*p) {
    while (*p == ' ' || *p == ',' || *p == '\t') p++;
    const char *e = p;
    while (*e && *e != ',') e++;
    const char *te = e;
    while (te > p && (te[-1] == ' ' || te[-1] == '\t')) te--;
    if ((size_t)(te - p) == tl && strncasecmp(p, tok, tl) == 0) return true;
    p = e;
  }
  return false;
}

/* sl_ws_handshake: see ws.h. */
bool sl_ws_handshake(sl_conn *c, const sl_ws_handler *h) {
  sl_req *r = c->req;
  const char *why = NULL;
  if (c->parser.method != HTTP_GET)
    why = "WebSocket upgrade must be GET";
  else if (!r->upgrade || strcasecmp(r->upgrade, "websocket") != 0)
    why = "missing Upgrade: websocket";
  else if (!header_has_token(r->connection, "upgrade"))
    why = "missing Connection: Upgrade";
  else if (!r->ws_key || strlen(r->ws_key) != 24)
    why = "bad Sec-WebSocket-Key";
  if (!why && (!r->ws_version || strcmp(r->ws_version, "13") != 0)) {
    sl_http_respond(c, 426, "text/plain", "unsupported WebSocket version\n", 30,
                    "Sec-WebSocket-Version: 13\r\n");
    c->close_after_write = 1;
    return false;
  }
  if (why) {
    c->close_after_write = 1;
    sl_http_respond(c, 400, "text/plain", why, strlen(why), NULL);
    return false;
  }
  char buf[64];
  memcpy(buf, r->ws_key, 24);
  memcpy(buf + 24, WS_GUID, 36);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  EVP_Digest(buf, 60, md, &mdlen, EVP_sha1(), NULL);
  char accept[32];
  size_t al = sl_b64_encode(md, mdlen, accept);
  accept[al] = 0;
  char resp[256];
  int n = snprintf(resp, sizeof resp,
                   "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                   accept);
  sl_conn_upgrade(c, &h->conn);
  sl_conn_queue(c, sl_msg_raw_new(resp, (size_t)n), true);
  return true;
}

/* sl_ws_conn_closed: see ws.h. */
void sl_ws_conn_closed(sl_conn *c) {
  handler(c)->on_close(c);
  ws_release(c);
}
