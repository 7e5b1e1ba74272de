/* sl_internal.h - the core's private data model.
 *
 * Ownership in one picture:
 *
 *   sl_gateway --owns--> sl_server[] --owns--> sl_ns[] --owns--> sl_topic[] (subscriber arrays)
 *                                  \--owns--> listening uv_tcp_t, sessions (by sid)
 *   sl_conn   (one TCP connection; HTTP, then maybe WebSocket)
 *   sl_session (one Engine.IO session; outlives polling requests, points at its WS conn)
 *     \--owns--> sl_socket (one per joined namespace) --owns--> sl_lane (one per subscribed topic)
 *   sl_msg    (an immutable encoded packet/frame, refcounted, shared by every lane and
 *              write queue that holds it)
 */
#ifndef SL_INTERNAL_H
#define SL_INTERNAL_H

#include <uv.h>
#include <http_parser.h>
#include <wslay/wslay.h>
#include "sl_util.h"
#include "sl_core.h"
#include "sluice.h"
#include "config.h"
#include "../lua/sl_config.h" /* the loaders, still called by gateway.c reload.c main.c */
#include "../lua/sl_lua.h"

struct sl_lua;

/* ---- messages ------------------------------------------------------------------------ */

#define SL_MSG_HDR 10 /* room reserved in front of the packet for a WebSocket frame header */

/* An immutable, refcounted byte buffer. For Engine.IO packets, buf[SL_MSG_HDR..] holds the
 * packet ("42/feed,[...]" or raw binary) and the WebSocket frame header sits right before it,
 * so the same bytes serve a WebSocket frame and a polling record. For raw HTTP bytes, hdrlen
 * is 0 and the bytes are written as they are. */
typedef struct sl_msg {
  uint32_t refs;
  uint32_t len;        /* packet length (after the header room) */
  uint8_t hdrlen;      /* WebSocket header length (0: raw bytes / not framed) */
  uint8_t binary;      /* Engine.IO binary message (opcode 2 / polling "b" + base64) */
  uint8_t immortal;    /* static message: refcount ignored */
  uint8_t kind;        /* SL_MK_* */
  uint32_t est_bytes;  /* queue accounting: JSON length of the payload (StreamFenceJs) */
  char *key;           /* coalesce key or NULL: owned, or inline right after the packet */
  char *msgid;         /* message id (owned) for deliveries, NULL otherwise */
  uint8_t buf[];
} sl_msg;

enum { SL_MK_CONTROL = 0, SL_MK_DELIVERY = 1, SL_MK_RAW = 2 };

#define sl_msg_packet(m) ((m)->buf + SL_MSG_HDR)
#define sl_msg_frame(m) ((m)->buf + SL_MSG_HDR - (m)->hdrlen)
#define sl_msg_frame_len(m) ((size_t)(m)->hdrlen + (m)->len)

sl_msg *sl_msg_new(size_t len, int kind);              /* uninitialised packet bytes */
sl_msg *sl_msg_packet_new(const void *p, size_t len, bool binary, int kind); /* framed */
void sl_msg_frame_finish(sl_msg *m);                  /* write the WS header for len/binary */
sl_msg *sl_msg_raw_new(const void *p, size_t len);     /* raw bytes, no frame */
static inline sl_msg *sl_msg_ref(sl_msg *m) { if (!m->immortal) m->refs++; return m; }
void sl_msg_unref(sl_msg *m);
extern sl_msg *sl_msg_rs; /* the polling record separator "\x1e" (immortal) */

/* A FIFO of message references (ring buffer). Entries are tagged: bit 0 set = write the raw
 * packet bytes (no WebSocket header). Costs nothing until first used. */
typedef struct sl_mq {
  uintptr_t *v;
  uint32_t head, n, cap;
} sl_mq;

void sl_mq_push(sl_mq *q, sl_msg *m, bool raw); /* takes ownership of one reference */
static inline sl_msg *sl_mq_at(const sl_mq *q, uint32_t i) {
  return (sl_msg *)(q->v[(q->head + i) & (q->cap - 1)] & ~(uintptr_t)1);
}
static inline bool sl_mq_raw_at(const sl_mq *q, uint32_t i) {
  return q->v[(q->head + i) & (q->cap - 1)] & 1;
}
sl_msg *sl_mq_pop(sl_mq *q);        /* returns the reference (caller unrefs) */
void sl_mq_clear(sl_mq *q);          /* unrefs everything, frees storage */
static inline size_t sl_mq_bytes_at(const sl_mq *q, uint32_t i) {
  sl_msg *m = sl_mq_at(q, i);
  return sl_mq_raw_at(q, i) ? m->len : sl_msg_frame_len(m);
}

/* ---- intrusive lists and a string-keyed hash ------------------------------------------ */

typedef struct sl_link { struct sl_link *prev, *next; } sl_link;
static inline void sl_list_init(sl_link *h) { h->prev = h->next = h; }
static inline bool sl_list_empty(const sl_link *h) { return h->next == h; }
static inline bool sl_linked(const sl_link *l) { return l->next != NULL; }
static inline void sl_list_push(sl_link *h, sl_link *l) {
  l->prev = h->prev; l->next = h; h->prev->next = l; h->prev = l;
}
static inline void sl_list_del(sl_link *l) {
  if (!l->next) return;
  l->prev->next = l->next; l->next->prev = l->prev; l->next = l->prev = NULL;
}

typedef struct sl_hent { struct sl_hent *hnext; const char *hkey; } sl_hent;
typedef struct sl_hash { sl_hent **b; size_t nb, n; } sl_hash;
void sl_hash_put(sl_hash *h, sl_hent *e, const char *key); /* key must outlive the entry */
sl_hent *sl_hash_get(const sl_hash *h, const char *key);
void sl_hash_del(sl_hash *h, sl_hent *e);
void sl_hash_free(sl_hash *h);

/* ---- metrics -------------------------------------------------------------------------- */

enum {
  SL_M_PUBLISHED = 0, SL_M_PUBLISHED_BYTES, SL_M_RECEIVED, SL_M_RECEIVED_BYTES,
  SL_M_RETRIES, SL_M_RETRIES_EXHAUSTED, SL_M_DROPPED, SL_M_COALESCED, SL_M_SPILLED,
  SL_M_TOPIC_COUNT
};
/* overflow reasons (label values are StreamFenceJs's strings) */
enum {
  SL_OV_TOO_BIG = 0, SL_OV_REJECT_NEW, SL_OV_NO_COALESCE_MATCH, SL_OV_SPILLED,
  SL_OV_SPILL_FAILED, SL_OV_COUNT
};
extern const char *const sl_overflow_reasons[SL_OV_COUNT];

/* ---- topology ------------------------------------------------------------------------- */

typedef struct sl_lane sl_lane;
typedef struct sl_session sl_session;
typedef struct sl_conn sl_conn;

typedef struct sl_topic {
  char *name;
  char *json_name;          /* the topic as a JSON string literal, quotes included */
  struct sl_ns *ns;
  sl_lane **subs;           /* subscriber lanes (unordered; lane->sub_idx is the slot) */
  uint32_t nsubs, capsubs;
  sl_msg *last;             /* last published delivery (snapshot-on-subscribe) */
  uint64_t m[SL_M_TOPIC_COUNT];
  uint64_t overflow[SL_OV_COUNT];
  uint64_t spill_corrupt;   /* spilled records skipped as corrupt */
  int snap_ref;             /* snapshot state in the Lua VM (SL_NOREF: decode snap_json) */
  char *snap_json;          /* current snapshot state as JSON (survives reloads) */
} sl_topic;

typedef struct sl_ns {
  struct sl_server *srv;
  sl_ns_config *cfg;        /* owned by the server's config generation */
  char *path;
  char *json_path;          /* the path as a JSON string literal (delivery metadata) */
  size_t pathlen;
  sl_topic *topics;
  size_t ntopics;
  sl_hash sockets;          /* socket id -> sl_socket */
  uint64_t connections, disconnections, auth_rejected, auth_rate_limited;
  uint64_t route_dropped;   /* publishes dropped by the route hook */
  bool implicit_root;       /* "/" that is not configured: accepts, handles nothing */
} sl_ns;

struct sl_server {
  sl_gateway *gw;
  sl_server_config *cfg;
  uv_tcp_t listener;
  int port;                 /* bound port */
  sl_ns *ns;
  size_t nns;
  sl_ns root;               /* implicit "/" */
  sl_hash sessions;         /* Engine.IO sid -> sl_session */
  sl_hash auth_failures;    /* remote address -> recent auth failures (rate limit) */
  sl_link conns;            /* every sl_conn of this server */
  bool listening;
};

/* ---- connections ---------------------------------------------------------------------- */

enum { SL_CONN_HTTP = 0, SL_CONN_WS = 1 };

/* Request state, allocated only while a request is being read. */
typedef struct sl_req {
  sl_sbuf url;
  sl_sbuf body;
  sl_sbuf hfield, hvalue;   /* current header being read */
  size_t header_bytes;
  char *upgrade, *connection, *ws_key, *ws_version, *content_type, *authorization, *origin;
  int last_was_value;
  bool complete;
  bool too_big;             /* body over the limit (413) */
} sl_req;

struct sl_conn {
  uv_tcp_t tcp;             /* first: handle->data not needed, container_of works */
  sl_server *srv;
  sl_link link;             /* in srv->conns */
  sl_link tlink;            /* in the gateway's timeout list while reading HTTP headers / idle */
  uint64_t deadline;        /* for tlink */
  http_parser parser;
  sl_req *req;
  sl_sbuf *pend;            /* pipelined bytes received while a response is pending */
  sl_mq wq;                 /* write queue; the first `inflight` entries are being written */
  size_t wq_bytes;          /* unsent bytes (including in flight) */
  uint32_t head_off;        /* bytes of the first entry already written */
  uint32_t inflight;        /* entries covered by the uv_write in flight */
  uv_write_t *wreq;         /* allocated only while a uv_write is in flight */
  uint8_t mode;             /* SL_CONN_* */
  uint8_t closing;
  uint8_t writing;          /* a uv_write is in flight */
  uint8_t close_after_write;
  uint8_t paused;           /* reading stopped until the response is written */
  uint8_t held;             /* this connection holds a polling GET */
  uint8_t ws_closing;
  uint8_t is_probe;         /* WebSocket waiting for "5" during an upgrade */
  sl_session *sess;         /* Engine.IO session bound to this connection (WS / held GET) */
  struct sl_eio_conn *eio;  /* raw Engine.IO endpoint session (WS) */
  struct sl_ws_slot *ws;    /* wslay context borrowed from the pool while a frame is partly read */
  uint8_t in_ws;            /* inside wslay_event_recv: defer releasing the context */
  /* minimal frame-boundary tracker, so the wslay context can be returned to the pool */
  uint8_t fh[14];
  uint8_t fhave;
  uint8_t frag;             /* inside a fragmented data message */
  uint64_t fleft;           /* payload bytes of the current frame still to come */
};

/* ---- Engine.IO sessions ------------------------------------------------------------- */

enum { SL_TR_POLLING = 0, SL_TR_WS = 1 };
enum { SL_ST_OPEN = 0, SL_ST_UPGRADING, SL_ST_CLOSED };

struct sl_session {
  sl_hent hent;             /* in srv->sessions (key = sid) */
  sl_server *srv;
  char sid[21];
  uint8_t transport;
  uint8_t state;
  uint8_t waiting_pong;
  uint8_t ever_joined;
  uint8_t dirty;            /* in the gateway's flush list */
  uint8_t raw;              /* a raw Engine.IO endpoint session (no Socket.IO) */
  sl_conn *ws;              /* the WebSocket connection, when transport == WS */
  sl_conn *probe;           /* WebSocket being upgraded to */
  sl_conn *get;             /* held polling GET */
  sl_mq pq;                 /* packets waiting for a polling GET */
  size_t pq_bytes;
  uint64_t due;             /* next heartbeat / pong / connect deadline (loop ms) */
  uint32_t hidx;            /* position in gw->sheap, UINT32_MAX when not in it */
  uint64_t created_ms;
  uint64_t ping_due, pong_due;
  struct sl_socket *sockets;/* joined namespaces */
  sl_link ready;            /* lanes with messages waiting for room in the socket */
  sl_link dlink;            /* in the gateway's dirty list */
  /* binary packet being reassembled */
  struct sl_pending_bin *pbin;
  struct sl_eio_conn *eio;
  struct sl_session *next_dead;
  char remote[46];
  char *bearer;             /* Authorization: Bearer token seen at the handshake */
};

/* ---- Socket.IO sockets and lanes ----------------------------------------------------- */

struct sl_socket {
  sl_hent hent;             /* in ns->sockets (key = id) */
  sl_session *sess;
  sl_ns *ns;
  struct sl_socket *next;   /* in sess->sockets */
  sl_lane *lanes;           /* subscriptions */
  char *principal;
  char *auth_token;         /* auth.token from the CONNECT payload */
  int lua_ref;
  uint8_t gone;
  uint8_t connecting;       /* inside onConnect: emits wait for the CONNECT reply */
  sl_mq early;              /* packets emitted during onConnect */
  char id[21];
};

struct sl_lane {
  sl_socket *sock;
  sl_topic *topic;
  sl_lane *next;            /* in sock->lanes */
  sl_link rlink;            /* in sess->ready while it has sendable messages */
  uint32_t sub_idx;         /* slot in topic->subs, UINT32_MAX when not subscribed */
  /* bounded FIFO of pending deliveries */
  sl_msg **q;
  uint32_t qhead, qn, qcap;
  uint64_t qbytes;          /* est_bytes of pending + in-flight messages */
  /* AT_LEAST_ONCE: sent, awaiting the client's ack (at most maxInFlight) */
  struct sl_inflight **infl;
  uint32_t ninfl;
  /* SPILL_TO_DISK: overflow on disk, refilled in FIFO order */
  struct sl_spill *spill;
  uint8_t refilling;        /* a spill read is pending */
  uint8_t spill_failed_logged;
};

/* An AT_LEAST_ONCE message sent to one client and not yet acknowledged. */
typedef struct sl_inflight {
  sl_msg *m;
  sl_lane *lane;
  uint64_t deadline;        /* loop time (ms) of the ack deadline */
  uint32_t heap_idx;        /* position in gw->acks */
  uint32_t retries;         /* re-sends so far */
} sl_inflight;

struct sl_eio_conn {
  sl_hent hent;
  sl_session *sess;
  int lua_ref;
};

struct sl_gateway {
  uv_loop_t *loop;
  sl_config *cfg;
  struct sl_lua *lua;
  sl_server *servers;
  size_t nservers;
  sl_link dirty;            /* sessions with pending flush work */
  uv_prepare_t prep;
  uv_check_t check;
  uv_timer_t sweep;         /* HTTP header / idle timeouts */
  sl_link timeouts;
  sl_socket *dead;          /* sockets released, freed at the next safe point */
  sl_session *dead_sessions;/* sessions closed, freed at the next safe point */
  sl_session **sheap;       /* min-heap of session deadlines: one timer for all sessions */
  uint32_t nsheap, capsheap;
  uv_timer_t sess_timer;
  uv_signal_t sigs[3];
  bool stopping;
  uint64_t msg_counter;
  char boot_id[12];
  uint64_t started_ms;
  uint64_t lua_errors;       /* Lua errors of VMs replaced by reloads (keeps the counter monotonic) */
  sl_lathist hook_times[SL_HT_KINDS]; /* sampled Lua hook timing, across reloads (sl_lua.h) */
  sl_inflight **acks;       /* min-heap of ack deadlines (no periodic scans) */
  uint32_t nacks, capacks;
  uv_timer_t ack_timer;
  uv_fs_event_t watch, watch_scripts; /* config directory watches (hot reload) */
  uv_timer_t reload_timer;  /* debounce for the watches */
  uint64_t reloads_ok, reloads_failed;
  double last_reload_ms;
  int closing_handles;
  void (*on_stopped)(sl_gateway *, void *);
  void *on_stopped_arg;
};

/* ---- cross-module functions ----------------------------------------------------------- */

/* net.c */
int sl_server_listen(sl_server *srv);
void sl_conn_close(sl_conn *c);
void sl_conn_send(sl_conn *c, sl_msg *m, bool raw);  /* takes the reference; flushes */
void sl_conn_flush(sl_conn *c);
void sl_conn_queue(sl_conn *c, sl_msg *m, bool raw); /* no flush */
void sl_net_start_sweeper(sl_gateway *gw);
void sl_server_close_conns(sl_server *srv);
void sl_http_respond(sl_conn *c, int status, const char *ctype, const char *body, size_t len,
                     const char *extra_headers);
void sl_http_json_error(sl_conn *c, int status, const char *code, const char *message);
void sl_conn_resume(sl_conn *c);
const char *sl_conn_remote(sl_conn *c, char *buf, size_t len); /* peer address text */

/* ws.c */
bool sl_ws_handshake(sl_conn *c);                    /* writes 101 or an error; false on error */
void sl_ws_feed(sl_conn *c, const uint8_t *data, size_t len);
void sl_ws_close(sl_conn *c, uint16_t code, const char *reason);
void sl_ws_release(sl_conn *c);

/* eio.c */
void sl_eio_http(sl_conn *c, bool upgrade);           /* a request under /socket.io/ */
void sl_eio_ws_message(sl_conn *c, const uint8_t *data, size_t len, bool binary);
void sl_eio_conn_lost(sl_conn *c);                    /* WS or held GET connection closed */
void sl_session_send(sl_session *s, sl_msg *m);       /* takes the reference */
void sl_session_close(sl_session *s, const char *reason);
void sl_eio_start(sl_gateway *gw);
void sl_eio_free_dead(sl_gateway *gw);
size_t sl_session_unsent(const sl_session *s);
void sl_session_mark_dirty(sl_session *s);
void sl_session_flush(sl_session *s);
size_t sl_session_high_water(const sl_session *s);

/* sio.c */
void sl_sio_message(sl_session *s, const uint8_t *data, size_t len, bool binary);
void sl_sio_session_closed(sl_session *s);
void sl_auth_free_table(sl_server *srv);
sl_msg *sl_sio_encode(int type, const char *nsp, size_t nsplen, int64_t ack_id,
                      const char *json, size_t jsonlen, int attachments);

/* delivery.c */
int sl_ns_init(sl_ns *ns, sl_server *srv, sl_ns_config *cfg);
void sl_ns_free(sl_ns *ns);
sl_topic *sl_topic_find(sl_ns *ns, const char *name, size_t len);
sl_ns *sl_server_find_ns(sl_server *srv, const char *path, size_t len);
int sl_subscribe(sl_socket *sock, sl_topic *t);
void sl_unsubscribe(sl_socket *sock, sl_topic *t);
void sl_socket_drop_lanes(sl_socket *sock);
bool sl_session_pull(sl_session *s, size_t budget);   /* move lane messages into the session */
void sl_gateway_flush_dirty(sl_gateway *gw);
bool sl_delivery_ack(sl_socket *sock, sl_topic *t, const char *msgid);
void sl_delivery_start(sl_gateway *gw);
void sl_delivery_stop(sl_gateway *gw);
void sl_spill_sweep_server(sl_server *srv);

/* api.c */
void sl_api_http(sl_conn *c);                          /* any non-/socket.io/ request */

/* gateway.c */
void sl_gateway_next_msgid(sl_gateway *gw, char *out);
bool sl_gateway_is_loopback(const char *addr);
void sl_gateway_defer_free_socket(sl_gateway *gw, sl_socket *sock);
/* Server event hooks (onConnect, onDisconnect, onSubscribe, onUnsubscribe, onOverflow,
 * onRetryExhausted): no work at all when the hook is not set. */
enum { SL_EV_CONNECT, SL_EV_DISCONNECT, SL_EV_SUBSCRIBE, SL_EV_UNSUBSCRIBE, SL_EV_OVERFLOW,
       SL_EV_RETRY_EXHAUSTED };
void sl_gateway_event(sl_server *srv, int ev, sl_socket *sock, const char *topic,
                      const char *reason, const char *msgid, long retries);
void sl_gateway_retry_exhausted(sl_gateway *gw, sl_socket *sock, sl_topic *t, const char *msgid,
                                uint32_t retries);

#endif
