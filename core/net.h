/* net.h - the ground floor: TCP listener, connections, HTTP/1.1 request parsing, the write
 * queue and the header/idle timeouts (net.c).
 *
 * net calls nothing above it. It reaches up only through callbacks it was handed, libuv
 * style:
 *
 *   - a request callback per listener (sl_server_listen): a complete HTTP request (or an
 *     upgrade request's headers, or a request refused as too big) is ready on the connection;
 *   - per connection, one pointer to a table of callbacks (sl_conn_ops) installed by the layer
 *     that took the connection over (a WebSocket after its handshake, a held polling GET).
 *
 * Why one `const sl_conn_ops *ops` and not three function pointers in every connection: the
 * callbacks depend only on what the connection has become (plain HTTP, a held polling GET, a
 * WebSocket of a session), so each layer keeps one static table per mode and a connection
 * pays one pointer for it; its owner's object hangs off the single `data` pointer. An idle
 * connection costs no more than before the split (the pointer replaced a dead field). */
#ifndef SL_NET_H
#define SL_NET_H

#include "sl_internal.h"

/* What net tells the layer that owns a connection. Every member may be NULL. All run on the
 * loop thread, inside net's read/write/close paths: they may queue, flush or close the
 * connection (sl_conn_close is safe there: memory is released in libuv's close callback). */
typedef struct sl_conn_ops {
  /* Bytes read on an upgraded connection (sl_conn_upgrade), including what followed the
   * upgrade request's headers. `data` is net's shared read buffer: valid only during the
   * call. NULL: the bytes are dropped. */
  void (*on_data)(sl_conn *c, const uint8_t *data, size_t len);
  /* The uv_write in flight finished and its bytes left the queue. Entries queued meanwhile
   * may still wait: the callee must end in sl_conn_flush (directly or through its own flush)
   * so they are written. NULL: net calls sl_conn_flush itself. */
  void (*on_drain)(sl_conn *c);
  /* The connection is closing (peer gone, error, timeout, or sl_conn_close). Called once,
   * from sl_conn_close, before the handle is closed; the connection must not be used after
   * this returns (its memory goes away in the close callback). */
  void (*on_close)(sl_conn *c);
  /* The partial input c holds must go: reason is SL_REFUSE_INBOUND_BUDGET (the server's
   * maxInboundBufferBytes is spent and c holds the most) or SL_REFUSE_PARTIAL_TIMEOUT (a
   * message started partialMessageTimeoutMs ago and is not complete). net has already
   * uncharged c and counted the refusal; the owner frees what it buffered now and closes
   * (ws: close 1013 or 1008). Called only on an upgraded connection, never from inside its
   * own on_data. NULL: net closes the connection. */
  void (*on_limit)(sl_conn *c, int reason);
} sl_conn_ops;

/* A complete request is ready on c (c->req: URL, headers, body; c->parser: method, upgrade,
 * keep-alive). The callback answers it (sl_http_respond), holds it (set c->held and answer
 * later), or takes the connection over (sl_conn_upgrade). Also called for a request whose
 * body is over maxPayload (c->req->too_big, c->req->complete, close_after_write set): when it
 * queues nothing, net answers 413 itself. */
typedef void (*sl_request_cb)(sl_conn *c);

enum { SL_CONN_HTTP = 0, SL_CONN_UPGRADED = 1 };

/* sl_req.proxied: the request carries headers a proxy adds. */
enum { SL_PROXY_FORWARDED = 1, SL_PROXY_X_FORWARDED_FOR = 2, SL_PROXY_X_REAL_IP = 4 };

/* Request state, allocated only while a request is being read (and freed when the
 * connection is upgraded). */
typedef struct sl_req {
  sl_sbuf url;
  sl_sbuf body;
  sl_sbuf hfield, hvalue; /* current header being read */
  size_t header_bytes;
  char *upgrade, *connection, *ws_key, *ws_version, *content_type, *authorization, *origin;
  char *host;        /* Host */
  char *acr_headers; /* Access-Control-Request-Headers (a CORS preflight) */
  uint8_t proxied;   /* SL_PROXY_* bits: forwarding headers seen (any value) */
  sl_sbuf headers;   /* every header as "name\0value\0" (name lowercased), nheaders
                               pairs; kept only when srv->keep_headers */
  size_t nheaders;
  int last_was_value;
  bool complete;
  bool too_big;  /* body over the limit (413) */
  bool in_body;  /* headers done, body being read (partialMessageTimeoutMs) */
  bool answered; /* sl_http_respond was called for this request */
} sl_req;

/* One TCP connection. Public: srv, req, parser (read-only for the layers above), the owner's
 * object (sl_conn_data), held, close_after_write. The ws fields are private to ws.c,
 * is_probe to eio.c; they live here so a connection is one allocation. The flags are
 * bit-fields, all in one word. */
struct sl_conn {
  sl_server *srv;
  sl_link link;      /* in srv->conns */
  sl_link tlink;     /* in the gateway's timeout list while reading HTTP headers / idle */
  uint64_t deadline; /* for tlink */
  /* The HTTP parser while the connection speaks HTTP; once it is upgraded (mode
   * SL_CONN_UPGRADED, zeroed by net before the first byte goes to ops->on_data), the same 32
   * bytes are ws.c's minimal frame-boundary tracker, which lets the wslay context go back to
   * the pool between frames. */
  union {
    http_parser parser;
    struct {
      uint64_t fleft; /* ws.c: payload bytes of the current frame still to come */
      uint64_t fmsg;  /* ws.c: bytes wslay holds for the partial message */
      uint8_t fh[14]; /* ws.c: the frame header being read */
      uint8_t fhave;
      uint8_t frag; /* ws.c: inside a fragmented data message */
    };
  };
  sl_req *req;
  sl_sbuf *pend;          /* pipelined bytes received while a response is pending */
  sl_mq wq;               /* write queue; the first `inflight` entries are being written */
  size_t wq_bytes;        /* unsent bytes (including in flight) */
  uint32_t head_off;      /* bytes of the first entry already written */
  uint32_t inflight;      /* entries covered by the uv_write in flight */
  uv_write_t *wreq;       /* allocated only while a uv_write is in flight */
  const sl_conn_ops *ops; /* the owner's callbacks (NULL: plain HTTP, nobody above) */
  unsigned mode : 1;      /* SL_CONN_* */
  unsigned closing : 1;
  unsigned writing : 1; /* a uv_write is in flight */
  unsigned close_after_write : 1;
  unsigned paused : 1;     /* reading stopped until the response is written */
  unsigned held : 1;       /* the owner holds the request unanswered (a polling GET) */
  unsigned ws_closing : 1; /* ws.c: a close frame was sent or received */
  unsigned is_probe : 1;   /* eio.c: WebSocket waiting for "5" during an upgrade */
  unsigned api : 1;        /* accepted on the server's API listener (sl_server_listen_api) */
  unsigned in_ws : 1;      /* ws.c: inside wslay_event_recv: defer releasing the context */
  unsigned lingering : 2;  /* answered an early error: discard input, then close (1; 2: the
                              answer is written and the connection half-closed) */
  unsigned counted : 2;    /* 1: counted in srv->lim.nconns, 2: in nlinger, 0: neither */
  unsigned fed : 1;        /* set by the owner while it feeds deliveries: the write queue keeps its
                       ring when it empties (else the ring is freed: an idle one holds none) */
  uint32_t discarded;      /* bytes read and dropped while lingering (at most SL_LINGER_BYTES) */
  struct sl_ws_slot
      *ws;            /* ws.c: wslay context borrowed from the pool while a frame is partly read */
  struct sl_tls *tls; /* tls.h: the TLS engine, NULL on a plain listener */
  struct sl_tls_out *tout; /* TLS: ciphertext the kernel has not taken yet (NULL when none) */
  /* net.c / net_limits.c: admission and the inbound budget (sl_limits) */
  struct sl_addr_slot *addr; /* the peer address's counts (NULL: per-address limits off) */
  /* in srv->lim.big while c holds partial input charged to the budget, key ~bytes (the
   * charge itself: sl_conn_charged) */
  sl_heap_node inb;
  /* Last, so that a TCP connection is allocated without the bytes only a Unix socket's
   * handle needs (SL_CONN_TCP_SIZE); libuv's callbacks find the connection by container_of.
   * The handle's data pointer (libuv leaves it to its user) is the owner's object: see
   * sl_conn_data. */
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe; /* accepted on a Unix socket (the API listener) */
  };
};

/* sl_conn_data: the object of the layer that owns c (eio: the sl_session bound to it), NULL
 * when none; kept in the handle's data pointer. sl_conn_set_data sets it. */
static inline void *sl_conn_data(const sl_conn *c) { return c->tcp.data; }
static inline void sl_conn_set_data(sl_conn *c, void *data) { c->tcp.data = data; }

/* sl_conn_charged: the bytes of partial input c has charged to the server's inbound budget
 * (0 when none): the key of its node in srv->lim.big. */
static inline uint64_t sl_conn_charged(const sl_conn *c) {
  return c->inb.idx != SL_HEAP_NONE ? ~c->inb.key : 0;
}

/* The allocation of a connection accepted on TCP: the struct without the pipe's extra bytes
 * (the full sizeof(sl_conn) for a Unix socket). */
#define SL_CONN_TCP_SIZE (offsetof(sl_conn, tcp) + sizeof(uv_tcp_t))

/* sl_server_listen: bind and listen on srv->cfg's host:port; every request read on an
 * accepted connection goes to on_request (stored in srv->on_request). When srv->tls is set
 * at accept time, the connection speaks TLS with that context (read at each accept, so a
 * new context serves new connections only). Returns 0 or a negative libuv error (the
 * listener is then closed and on_request never called). */
SL_WUR int sl_server_listen(sl_server *srv, sl_request_cb on_request);

/* sl_server_listen_api: bind and listen on srv->cfg->api (a Unix socket when api.path is
 * set: a stale socket file there is replaced and the new one made 0660; else host:port);
 * requests read on its connections go to on_request (srv->on_api_request) and those
 * connections have c->api set. Returns 0 or a negative libuv error (nothing listens then). */
int sl_server_listen_api(sl_server *srv, sl_request_cb on_request);

/* sl_server_close_api: stop the API listener (through close_cb, NULL allowed, which gets
 * the handle) and remove its Unix socket file. No-op when it does not listen. */
void sl_server_close_api(sl_server *srv, void (*close_cb)(uv_handle_t *), void *data);

/* sl_net_start_sweeper: start the gateway-wide timer (1 s, unref'd) that enforces the header
 * (10 s, answered 408) and keep-alive idle (60 s) timeouts. Call once per gateway. */
void sl_net_start_sweeper(sl_gateway *gw);

/* sl_net_server_free: release srv's admission tables (per-address slots, the budget heap).
 * Call when the server is destroyed, after its connections are closed. */
void sl_net_server_free(sl_server *srv);

/* sl_conn_inbound: c now holds `bytes` of partial input in memory (an HTTP body or pipelined
 * bytes in net, a partial WebSocket message in ws; 0: none). Shrinking always succeeds.
 * Growing must fit in the server's maxInboundBufferBytes: while it does not, the connection
 * holding the most is refused (net answers a plain HTTP one 503 INBOUND_BUFFERS_FULL, an
 * upgraded one goes to ops->on_limit) and uncharged. Returns true when `bytes` is charged;
 * false when c itself would hold the most: nothing changes (c keeps its old charge), the
 * refusal is counted, and the caller drops c's input and refuses c. */
bool sl_conn_inbound(sl_conn *c, uint64_t bytes);

/* sl_conn_deadline_start: arm c's partial-message deadline (the server's
 * partialMessageTimeoutMs from now) unless one is armed already. On an upgraded connection,
 * when it passes, net counts a SL_REFUSE_PARTIAL_TIMEOUT and calls ops->on_limit. */
void sl_conn_deadline_start(sl_conn *c);

/* sl_conn_deadline_stop: disarm it (the message completed). */
void sl_conn_deadline_stop(sl_conn *c);

/* sl_conn_admit_handshake: may c's peer open one more Engine.IO session now? Counts the
 * handshake in the peer address's one-second window (maxHandshakesPerSecondPerAddress;
 * loopback peers are exempt unless limitLoopback). Returns false, and counts a
 * SL_REFUSE_HANDSHAKE_RATE, when the window is full: the caller refuses the handshake. */
bool sl_conn_admit_handshake(sl_conn *c);

/* sl_server_count_refusal: count one refusal (SL_REFUSE_*) decided above net. */
void sl_server_count_refusal(sl_server *srv, int reason);

/* sl_conn_refuse: answer the request on c with `status` and the JSON error {code, message},
 * close the connection after it, and meanwhile read and discard what the client still sends
 * (bounded in time and bytes) so that it reads the answer instead of a reset. For early
 * errors with unread request data (413, 503, 408). */
void sl_conn_refuse(sl_conn *c, int status, const char *code, const char *message);

/* sl_conn_linger: when c closes after its queue is written (close_after_write), half-close
 * first and read and drop what the peer still sends (until it closes, 5 s, or 64 MiB), so
 * that it reads what was queued (a 413, a WebSocket close frame) instead of a reset. Call it
 * before queueing that last answer. From then on, bytes read are dropped. */
void sl_conn_linger(sl_conn *c);

/* sl__server_adopt: test seam for the fuzz targets (spec/fuzz/fuzz_gw.h), not for
 * production: make fd, an already connected stream socket (one end of a socketpair), a
 * connection of srv exactly as if its listener had accepted it. srv must be listening
 * (sl_server_listen installed its request callback). Returns the connection, or NULL when
 * libuv refuses fd (the caller still owns fd then). */
sl_conn *sl__server_adopt(sl_server *srv, uv_os_sock_t fd);

/* sl_server_close_conns: sl_conn_close every connection of srv (graceful stop). */
void sl_server_close_conns(sl_server *srv);

/* sl_conn_close: the one way to close a connection. Idempotent; safe inside any callback.
 * Calls c->ops->on_close first, stops reading, and frees the connection (and everything
 * still queued) in libuv's close callback, so c stays valid until the loop runs again. */
void sl_conn_close(sl_conn *c);

/* sl_conn_upgrade: the request on c was accepted as an upgrade. From now on bytes read go to
 * ops->on_data, write completions to ops->on_drain, the close to ops->on_close; the header
 * timeout is disarmed and no HTTP is parsed any more. ops must outlive the connection. */
void sl_conn_upgrade(sl_conn *c, const sl_conn_ops *ops);

/* sl_conn_send: queue a message reference and flush. raw: write the packet bytes as they are
 * (no WebSocket header). Takes ownership of the reference, also when the connection is
 * closing (then it is dropped). */
void sl_conn_send(sl_conn *c, sl_msg *m, bool raw);

/* sl_conn_queue: like sl_conn_send without the flush (the caller flushes once per batch). */
void sl_conn_queue(sl_conn *c, sl_msg *m, bool raw);

/* sl_conn_flush: write as much of the queue as the kernel takes now (uv_try_write over up to
 * 256 buffers at a time) and hand the rest to one uv_write, unless one is in flight already.
 * A write error closes the connection. When the queue is empty: closes it if
 * close_after_write, else resumes a paused HTTP connection and arms the idle timeout. */
void sl_conn_flush(sl_conn *c);

/* sl_conn_resume: a held request was answered; parse the pipelined requests kept meanwhile
 * and read again. No-op on a closing or unpaused connection. */
void sl_conn_resume(sl_conn *c);

/* sl_conn_remote: the peer's address as text into buf (len bytes; INET6_ADDRSTRLEN is
 * enough), computed on demand so connections do not store it. Returns buf: "unix" for a
 * connection accepted on a Unix socket, "" if unknown. */
const char *sl_conn_remote(sl_conn *c, char *buf, size_t len);

/* sl_http_respond: queue a complete HTTP/1.1 response (one buffer) and flush. ctype NULL
 * means text/plain; body is copied; extra_headers, when not NULL, is a block of
 * "Name: value\r\n" lines. Keeps the connection open when the request allows keep-alive,
 * else marks it close_after_write. No-op on a closing connection. */
void sl_http_respond(sl_conn *c, int status, const char *ctype, const char *body, size_t len,
                     const char *extra_headers);

/* sl_http_json_error: sl_http_respond with {"error":{"code":code,"message":message}}
 * (message JSON-escaped) as application/json. */
void sl_http_json_error(sl_conn *c, int status, const char *code, const char *message);

#endif
