/* eio.h - Engine.IO v4 sessions over net and ws: the handshake, HTTP long-polling, WebSocket,
 * the upgrade from polling to WebSocket, and the heartbeat (eio.c).
 *
 * eio calls net and ws below it and nothing above: what a session receives, when it ends,
 * and when it has room for more goes to the sl_eio_handler of its server
 * (srv->eio_handlers[sess->raw]), installed by the layer above: Socket.IO for /socket.io/
 * (router.c), the Lua raw endpoint for the engineIo path (eio_raw.c). */
#ifndef SL_EIO_H
#define SL_EIO_H

#include "ws.h"

/* What an Engine.IO session tells the layer above. Tables are static const and shared by
 * every session of a kind: a session costs nothing for them. All run on the loop thread. */
typedef struct sl_eio_handler {
  /* The session was opened by a handshake and its open packet queued. May be NULL. */
  void (*on_open)(sl_session *s);
  /* One message packet ("4..." text, or binary). data is writable and valid only during the
   * call (the read buffer or the POST body). The callee may close the session. */
  void (*on_message)(sl_session *s, const uint8_t *data, size_t len, bool binary);
  /* The session is closing (reason: "ping timeout", "transport close", "client close", ...).
   * Called once, before its transports are answered or closed; s is freed at the next safe
   * point (sl_eio_free_dead), so nothing may keep it. */
  void (*on_close)(sl_session *s, const char *reason);
  /* The session's unsent bytes are under the high-water mark: move up to about `budget`
   * bytes of waiting deliveries into it (sl_session_send or the transport queue). Returns
   * true when anything moved (the session then writes and asks again). May be NULL. */
  bool (*on_pull)(sl_session *s, size_t budget);
} sl_eio_handler;

enum { SL_TR_POLLING = 0, SL_TR_WS = 1 };
enum { SL_ST_OPEN = 0, SL_ST_UPGRADING, SL_ST_CLOSED };

/* The long-polling transport's state of a session: allocated by a polling handshake, freed
 * when the session moves to its WebSocket (the upgrade) or is freed. A session opened on a
 * WebSocket never has one, so it does not carry these bytes. */
typedef struct sl_poll {
  sl_conn *get;   /* held polling GET */
  sl_conn *probe; /* WebSocket being upgraded to */
  sl_mq pq;       /* packets waiting for a polling GET */
  size_t pq_bytes;
} sl_poll;

/* One Engine.IO session. It outlives the HTTP requests that carry it. sockets, ready, wait,
 * ever_joined (Socket.IO, delivery) and eio (raw endpoint) belong to the layers above; eio
 * only initialises them and reads ever_joined for the connect timeout. */
struct sl_session {
  union {
    sl_hent hent;                 /* in srv->sessions (key = sid) while open */
    struct sl_session *next_dead; /* in gw->dead_sessions once closed (out of the table) */
  };
  sl_server *srv;
  char sid[21];
  uint8_t transport;
  uint8_t state;
  uint8_t waiting_pong;
  uint8_t ever_joined;
  uint8_t dirty;   /* 1: on the gateway's dirty list; 2: on a batching window (window.h) */
  uint8_t raw;     /* a raw Engine.IO endpoint session (no Socket.IO) */
  sl_conn *ws;     /* the WebSocket connection, when transport == WS */
  sl_poll *poll;   /* while transport == POLLING (NULL after the upgrade) */
  sl_heap_node hn; /* in gw->sheap; key = next heartbeat / pong / connect deadline */
  uint64_t created_ms;
  union { /* one deadline: the next ping, or while waiting_pong the pong's */
    uint64_t ping_due;
    uint64_t pong_due;
  };
  struct sl_socket *sockets; /* joined namespaces */
  sl_link ready;             /* lanes with messages waiting for room in the socket */
  sl_link dlink;             /* in the gateway's dirty list or a batching window */
  union { /* the layer above's own state: Socket.IO's or the raw endpoint's (sess->raw) */
    /* Socket.IO: what it waits for (a binary packet's attachments, CONNECTs waiting for a
     * recovery lookup), allocated only while it waits (sio.c) */
    struct sl_sio_wait *wait;
    struct sl_eio_conn *eio; /* raw endpoint: the Lua connection box */
  };
  const char *remote; /* the peer's address at the handshake (gw->remotes: shared copies) */
  char *bearer;       /* Authorization: Bearer token seen at the handshake */
};

/* sl_eio_http: net's request for the Socket.IO endpoint or the raw engineIo path (the URL
 * says which; upgrade: the request asks for an upgrade). Answers OPTIONS, handshakes (a new
 * session, its open packet, then handler on_open), polling GETs (held until there is
 * something to send), POSTs (answered "ok", then each packet handled), and WebSocket
 * handshakes (a new session or the probe of an upgrade). Errors are answered with the
 * Engine.IO error JSON (400/403), or a plain 400 that closes the connection on an upgrade. */
void sl_eio_http(sl_conn *c, bool upgrade);

/* sl_session_send: queue one Engine.IO packet (a framed sl_msg; takes the reference, also
 * on a closed session, which drops it) and schedule a flush. Written in order with the
 * session's other packets: to the WebSocket's queue, or kept for the next polling GET. */
void sl_session_send(sl_session *s, sl_msg *m);

/* sl_session_queue: sl_session_send without scheduling a flush, for the handler's on_pull
 * (called inside sl_session_flush, which writes what it queued). Takes the reference. */
void sl_session_queue(sl_session *s, sl_msg *m);

/* sl_session_close: end the session with reason (logged, given to handler on_close). A held
 * GET is answered "1" (close), the WebSocket closes after what is queued, a probe closes.
 * Idempotent; s stays readable (state SL_ST_CLOSED) until the next safe point. */
void sl_session_close(sl_session *s, const char *reason);

/* sl_session_fail: sl_session_close for a protocol error of the client, telling it what the
 * protocol allows: the packets already queued for it (e.g. a CONNECT_ERROR that says why) go
 * out first, then a held GET gets "1" (close) and a WebSocket a close frame (1002, reason).
 * Without a held GET the polling client only sees the session gone (its next request: 400). */
void sl_session_fail(sl_session *s, const char *reason);

/* sl_session_mark_dirty: schedule sl_session_flush at the end of this loop iteration (the
 * gateway's dirty list), so every packet queued in one tick goes out in one write. A session
 * waiting on a batching window (sl_session_defer) moves to the dirty list: its window closes
 * early. No-op on a closed or already dirty session. */
void sl_session_mark_dirty(sl_session *s);

/* sl_session_defer: like sl_session_mark_dirty, but the flush may wait up to `ms`
 * milliseconds (the batching window of that interval, window.h), so that what else arrives
 * meanwhile goes out in the same write. ms 0 is sl_session_mark_dirty. A session already
 * scheduled (dirty or on a window) stays as it is; a later sl_session_mark_dirty (a control
 * packet, an ack answer, a delivery that may not wait) closes its window early: the session
 * is written at the end of that loop iteration with everything waiting for it. No-op on a
 * closed session. */
void sl_session_defer(sl_session *s, uint32_t ms);

/* sl_session_flush: while the unsent bytes are under the high-water mark, pull deliveries
 * (handler on_pull) and write: to the WebSocket, or as the answer of a held polling GET.
 * Loops while the kernel takes everything synchronously (at most 64 rounds, then marks the
 * session dirty to let others run). No-op on a closed session. */
void sl_session_flush(sl_session *s);

/* sl_session_unsent: bytes queued for this session and not yet taken by the kernel (the
 * WebSocket's write queue; or the packets waiting for a GET plus the GET's write queue). */
size_t sl_session_unsent(const sl_session *s);

/* sl_session_high_water: the server's socketHighWaterMark in bytes (65536 when not set or
 * not positive). Deliveries are pulled into a session only while sl_session_unsent is below
 * it, which bounds a slow client's memory. */
size_t sl_session_high_water(const sl_session *s);

/* sl_eio_start: initialise the gateway's session deadline timer (unref'd; heartbeats, pong
 * and connect timeouts of every session). Call once when the gateway starts. */
void sl_eio_start(sl_gateway *gw);

/* sl_eio_free_dead: free the sessions closed since the last safe point (call where no
 * caller up the stack can still hold one: the loop's flush of dirty sessions). */
void sl_eio_free_dead(sl_gateway *gw);

#endif
