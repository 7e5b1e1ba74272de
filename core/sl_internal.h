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
#include "heap.h"
#include "msg.h"
#include "sl_core.h"
#include "sluice.h"
#include "config.h"
#include "hooks.h"
#include "gateway.h"
#include "pool.h"

/* ---- metrics -------------------------------------------------------------------------- */

enum {
  SL_M_PUBLISHED = 0,
  SL_M_PUBLISHED_BYTES,
  SL_M_RECEIVED,
  SL_M_RECEIVED_BYTES,
  SL_M_RETRIES,
  SL_M_RETRIES_EXHAUSTED,
  SL_M_DROPPED,
  SL_M_COALESCED,
  SL_M_SPILLED,
  SL_M_TOPIC_COUNT
};
/* overflow reasons (label values are StreamFenceJs's strings) */
enum {
  SL_OV_TOO_BIG = 0,
  SL_OV_REJECT_NEW,
  SL_OV_NO_COALESCE_MATCH,
  SL_OV_SPILLED,
  SL_OV_SPILL_FAILED,
  SL_OV_COUNT
};
extern const char *const sl_overflow_reasons[SL_OV_COUNT];
/* why deliveries a lane held were lost (sluice_messages_lost_total{reason}) */
enum {
  SL_LOST_RESTART = 0,
  SL_LOST_DISCONNECT,
  SL_LOST_SPILL_FAILED,
  SL_LOST_TRIMMED, /* in flight on another node, gone from the stream when it was recovered */
  SL_LOST_COUNT
};
extern const char *const sl_lost_reasons[SL_LOST_COUNT];

/* The API's refusal rules (sluice_api_refused_total{reason}). */
enum {
  SL_API_REFUSED_TOKEN = 0,
  SL_API_REFUSED_FORWARDED,
  SL_API_REFUSED_PEER,
  SL_API_REFUSED_ORIGIN,
  SL_API_REFUSED_HOST,
  SL_API_REFUSED_CONTENT_TYPE,
  SL_API_REFUSED_COUNT
};

/* ---- topology ------------------------------------------------------------------------- */

typedef struct sl_lane sl_lane;
typedef struct sl_session sl_session;
struct sl_bus_pub; /* publish.h */
typedef struct sl_conn sl_conn;
typedef struct sl_window sl_window;
/* The most batching windows (distinct flushIntervalMs values) in use at once (window.h). */
#define SL_WINDOWS_MAX 16

typedef struct sl_topic {
  char *name;
  uint32_t tid;          /* unique in the gateway, kept across reloads (recovery history) */
  uint64_t hist_evicted; /* recovery: the newest offset of this topic the history let go */
  uint8_t hist_gap;      /* recovery: a delivery since the last recorded one has no offset */
  uint64_t replay_upto;  /* recovery: the largest sl_lane.replay_upto of its lanes (a bound) */
  char *json_name;       /* the topic as a JSON string literal, quotes included */
  struct sl_ns *ns;
  sl_lane **subs; /* subscriber lanes (unordered; lane->sub_idx is the slot) */
  uint32_t nsubs, capsubs;
  sl_msg *last; /* last published delivery (snapshot-on-subscribe) */
  uint64_t m[SL_M_TOPIC_COUNT];
  uint64_t overflow[SL_OV_COUNT];
  uint64_t spill_corrupt;       /* spilled records skipped as corrupt */
  uint64_t delivered;           /* messages handed to a client's transport (first sends) */
  uint64_t spill_read;          /* spilled records read back into a lane */
  uint64_t lost[SL_LOST_COUNT]; /* deliveries lost (restart: counted at start from what a
                               crashed process left; disconnect: held by a lane that went;
                               spill failed: the overflow could not be written) */
  uint64_t *held;               /* crash ledger counter (ledger.h), NULL: not (yet) tracked */
  uint8_t held_tried;           /* the ledger had no slot for it: do not ask again */
  int snap_slot;                /* the snapshot hook's own slot (sluice_hooks.snapshot; for Lua
                               a registry ref of the state), SLUICE_NOSLOT: none yet */
  char *snap_json;              /* current snapshot state as JSON (survives reloads) */
} sl_topic;

typedef struct sl_ns {
  struct sl_server *srv;
  sl_ns_config *cfg; /* owned by the server's config generation */
  char *path;
  char *json_path; /* the path as a JSON string literal (delivery metadata) */
  size_t pathlen;
  sl_topic *topics;
  size_t ntopics;
  sl_hash sockets; /* socket id -> sl_socket */
  uint64_t connections, disconnections, auth_rejected, auth_rate_limited;
  uint64_t route_dropped; /* publishes dropped by the route hook */
  bool implicit_root;     /* "/" that is not configured: accepts, handles nothing */
  sl_hookset hooks;       /* policy hooks (hooks.h) */
  /* connection-state recovery (cfg->recovery): sio keeps the parked sessions, delivery the
   * history (recovery.h). All zero / NULL while recovery is off. */
  sl_hash parked;           /* pid -> parked (or expired: a tombstone) sl_socket, sio.c */
  struct sl_history *hist;  /* recent deliveries for replay, recovery.c */
  uint64_t rec_seq;         /* the last offset given out (per namespace, never reused) */
  uint64_t recoveries[4];   /* by SL_REC_* (sluice_recoveries_total) */
  uint64_t replayed;        /* deliveries replayed into recovered lanes */
  uint64_t store_failed;    /* cluster recoveries given up: Redis failed (a fresh session) */
  uint64_t resent_inflight; /* AT_LEAST_ONCE in-flight messages sent again on recovery */
  uint64_t handoffs;        /* sessions parked here that another node took (released, not lost) */
} sl_ns;

/* sluice_recoveries_total{result}: why a CONNECT that presented a pid recovered or not. */
enum { SL_REC_RECOVERED = 0, SL_REC_EXPIRED, SL_REC_UNKNOWN, SL_REC_DENIED, SL_REC_COUNT };

/* ---- admission and inbound memory (net.c owns these; eio and ws report through net.h) -- */

/* Why a connection, a handshake or a partial input was refused: the reason label of
 * sluice_connections_refused_total (sl_refuse_reasons). */
enum {
  SL_REFUSE_CONNECTIONS = 0, /* maxConnections */
  SL_REFUSE_PER_ADDRESS,     /* maxConnectionsPerAddress */
  SL_REFUSE_SESSIONS,        /* maxSessions */
  SL_REFUSE_HANDSHAKE_RATE,  /* maxHandshakesPerSecondPerAddress */
  SL_REFUSE_INBOUND_BUDGET,  /* maxInboundBufferBytes spent: the largest partial input */
  SL_REFUSE_PARTIAL_TIMEOUT, /* a body or WebSocket message not complete in time */
  SL_REFUSE_COUNT
};
extern const char *const sl_refuse_reasons[SL_REFUSE_COUNT];

/* One server's admission state. Connections per address and the handshake rate are kept per
 * peer address (sl_addr_slot, net.c) only for addresses the limits apply to; the inbound
 * budget charges every connection holding a partial HTTP body, pipelined bytes or a partial
 * WebSocket message (sl_conn.inbound), and keeps those connections on a heap, largest first,
 * so the biggest can be refused when the budget is spent. */
typedef struct sl_limits {
  uint32_t nconns;       /* accepted connections (refused ones being answered: nlinger) */
  uint32_t nlinger;      /* refused connections answered and discarding input */
  uint64_t inbound;      /* bytes charged to maxInboundBufferBytes */
  uint64_t inbound_peak; /* the most ever charged at once */
  sl_heap big;           /* sl_conn by inbound, largest first (key = ~inbound) */
  sl_hash addrs;         /* peer address text -> sl_addr_slot */
  sl_link idle_addrs;    /* slots with no connection, kept for their handshake window */
  uint64_t refused[SL_REFUSE_COUNT];
} sl_limits;

struct sl_server {
  sl_gateway *gw;
  sl_server_config *cfg;
  uv_tcp_t listener;
  int port; /* bound port */
  sl_ns *ns;
  size_t nns;
  sl_ns root;            /* implicit "/" */
  sl_hash sessions;      /* Engine.IO sid -> sl_session */
  sl_hash auth_failures; /* remote address -> recent auth failures (rate limit) */
  const struct sl_sio_handler *sio_handler; /* the layer above Socket.IO (sio.h) */
  sl_link conns;                            /* every sl_conn of this server */
  void (*on_request)(sl_conn *c);           /* net.h sl_request_cb, given to sl_server_listen */
  /* eio.h: where this server's Engine.IO sessions report, [0] Socket.IO sessions, [1] the
   * raw engineIo endpoint (sl_session.raw); installed by the layer above (router.c). */
  const struct sl_eio_handler *eio_handlers[2];
  bool listening;
  sl_limits lim;                    /* connection/session limits and the inbound budget (net.c) */
  sl_hookset hooks;                 /* lifecycle event hooks and on_start (hooks.h) */
  struct sl_ledger *ledger;         /* crash ledger under the spill root (SPILL_TO_DISK servers) */
  uint64_t lost_restart_unlabelled; /* restart losses of no configured namespace/topic */
  /* the API's own listener (cfg->api.listen): net.c sl_server_listen_api */
  union {
    uv_tcp_t tcp;
    uv_pipe_t pipe;
  } api_listener;
  int api_port; /* bound port of api_listener (TCP) */
  bool api_listening;
  bool keep_headers; /* net: keep every request header (sl_req.headers); set by hooks.c */
  void (*on_api_request)(sl_conn *c); /* net.h sl_request_cb of api_listener */
  /* transport WSS: the context new connections get (tls.h), its reload state (reload.c) */
  struct sl_tls_ctx *tls;
  struct sl_tls_watch *tls_watch;
  uint64_t tls_handshake_errors;
  /* connections by record layer after the handshake (tls.h: the handoff), and the
   * connections closed for a TLS error after their handshake (bad record MAC, ...) */
  uint64_t tls_conns_offloaded, tls_conns_openssl, tls_record_errors;
  uint64_t net_writes; /* write system calls on this server's connections (net.c) */
  uint64_t tls_reloads_ok, tls_reloads_failed;
  /* the cluster bus (cluster.c): asked once per publish and topic when set (publish.h) */
  int (*bus)(void *ud, const struct sl_bus_pub *p);
  void *bus_ud;
  struct sl_cluster *cluster;     /* the server's cluster node, NULL: single node */
  struct sl_emitter_sub *emitter; /* the @socket.io/redis-emitter ingest (emitter_ingest.c) */
};

/* ---- Socket.IO sockets and lanes ----------------------------------------------------- */

/* (Members ordered by size, so that no padding is added; spec/bench/memsizes.c prints it.) */
struct sl_socket {
  sl_hent hent; /* in ns->sockets (key = id) */
  sl_session *sess;
  sl_ns *ns;
  struct sl_socket *next; /* in sess->sockets */
  sl_lane *lanes;         /* subscriptions */
  char *principal;
  char *auth_token; /* auth.token from the CONNECT payload */
  int slot;         /* the hook implementation's own slot (Lua: the box's ref) */
  uint8_t gone;
  uint8_t connecting; /* inside onConnect: emits wait for the CONNECT reply */
  uint8_t recovered;  /* this join restored a parked session (the connect event says so) */
  uint8_t parked;     /* SL_PARK_*: kept for recovery after its session went */
  char id[21];
  uint8_t rec; /* allocated as an sl_socket_rec (its namespace recovers): sl_socket_rec_of */
};

/* What only connection-state recovery keeps of a socket. A socket of a namespace with
 * `recovery` (when it is created) is allocated as this struct, the socket first, and has
 * sock->rec set; every other socket is a bare sl_socket and pays nothing for recovery. */
#define SL_PID_SIZE 25
typedef struct sl_socket_rec {
  sl_socket sock;        /* first: a recovering socket is a socket */
  char pid[SL_PID_SIZE]; /* the private session id, "" until given */
  sl_hent phent;         /* in ns->parked (key = pid) while parked */
  sl_heap_node pn;       /* in gw->parked: when the parked session (or its tombstone) expires */
  uint64_t rec_from;     /* the offset a recovering client presented (client.c) */
} sl_socket_rec;

/* sl_socket_rec_of: the recovery part of s, NULL when s has none (its namespace did not
 * recover when it was created). */
static inline sl_socket_rec *sl_socket_rec_of(sl_socket *s) {
  return s && s->rec ? (sl_socket_rec *)s : NULL;
}
/* sl_socket_pid: s's private session id, "" when it has none. */
static inline const char *sl_socket_pid(const sl_socket *s) {
  return s->rec ? ((const sl_socket_rec *)s)->pid : "";
}
/* sl_parked_socket: the socket of an entry of ns->parked. */
static inline sl_socket *sl_parked_socket(sl_hent *e) {
  return &sl_container_of(e, sl_socket_rec, phent)->sock;
}
/* SL_PARK_EXPIRING: kept, its time is up, the layer above is asking the cluster whether
 * another node took it (sio.h on_park_due); out of gw->parked meanwhile. */
enum { SL_PARK_NONE = 0, SL_PARK_KEPT, SL_PARK_TOMBSTONE, SL_PARK_EXPIRING };

/* (Members ordered by size, so that no padding is added; spec/bench/memsizes.c prints it.) */
struct sl_lane {
  sl_socket *sock;
  sl_topic *topic;
  sl_lane *next; /* in sock->lanes */
  sl_link rlink; /* in sess->ready while it has sendable messages */
  /* bounded FIFO of pending deliveries: q[qhead ..], qn of them, qcap slots */
  sl_msg **q;
  uint64_t qbytes; /* est_bytes of pending + in-flight messages */
  /* AT_LEAST_ONCE: sent, awaiting the client's ack (at most maxInFlight), ninfl of them */
  struct sl_inflight **infl;
  /* SPILL_TO_DISK: overflow on disk, refilled in FIFO order */
  struct sl_spill *spill;
  uint64_t held_rep; /* deliveries held, as last added to topic->held */
  uint32_t sub_idx;  /* slot in topic->subs, UINT32_MAX when not subscribed */
  uint32_t qhead, qn, qcap;
  uint32_t ninfl;
  uint8_t rebuilt;   /* recovery: rebuilt from another node's session (sl_lane_restore) */
  uint8_t refilling; /* a spill read is pending */
  uint8_t spill_failed_logged;
  uint8_t rec; /* allocated as an sl_lane_rec (its socket has a recovery part) */
};

/* What only connection-state recovery keeps of a lane: a lane of a socket with a recovery
 * part (sl_socket_rec) is allocated as this struct, the lane first, with lane->rec set. */
typedef struct sl_lane_rec {
  sl_lane lane;      /* first: a recovering lane is a lane */
  uint64_t sub_from; /* the namespace's offset when it subscribed */
  /* a replay from the stream offered up to this offset: a delivery the reader gives later
   * with an offset <= it is not offered again */
  uint64_t replay_upto;
} sl_lane_rec;

/* sl_lane_rec_of: the recovery part of l, NULL when it has none. */
static inline sl_lane_rec *sl_lane_rec_of(sl_lane *l) { return l->rec ? (sl_lane_rec *)l : NULL; }
/* sl_lane_sub_from, sl_lane_replay_upto: those offsets of l, 0 without a recovery part. */
static inline uint64_t sl_lane_sub_from(const sl_lane *l) {
  return l->rec ? ((const sl_lane_rec *)l)->sub_from : 0;
}
static inline uint64_t sl_lane_replay_upto(const sl_lane *l) {
  return l->rec ? ((const sl_lane_rec *)l)->replay_upto : 0;
}

/* An AT_LEAST_ONCE message sent to one client and not yet acknowledged. */
typedef struct sl_inflight {
  sl_msg *m;
  sl_lane *lane;
  sl_heap_node hn;  /* key: loop time (ms) of the ack deadline; in gw->acks */
  uint32_t retries; /* re-sends so far */
} sl_inflight;

struct sl_gateway {
  uv_loop_t *loop;
  sl_config *cfg;
  sl_server *servers;
  size_t nservers;
  sl_link dirty;   /* sessions with pending flush work */
  sl_hash remotes; /* peer addresses of the sessions, shared (msg.h sl_strpool) */
  /* batching windows (window.c): sessions whose deliveries wait up to flushIntervalMs */
  sl_window *windows[SL_WINDOWS_MAX];
  unsigned nwindows;
  uint64_t windows_closed; /* windows that closed with sessions to write */
  uv_prepare_t prep;
  uv_check_t check;
  uv_timer_t sweep; /* HTTP header / idle timeouts */
  sl_link timeouts;
  sl_socket *dead;           /* sockets released, freed at the next safe point */
  sl_session *dead_sessions; /* sessions closed, freed at the next safe point */
  sl_heap sheap;             /* sl_session by deadline: one timer for all sessions (eio.c) */
  uv_timer_t sess_timer;
  uv_signal_t sigs[3];
  bool stopping;
  bool draining;           /* sluice_drain: handshakes refused, waiting for lanes to empty */
  uv_timer_t drain_timer;  /* wakes the loop while draining (drain.c) */
  uv_check_t drain_check;  /* tests, after the loop's flush, whether the lanes are empty */
  uint64_t drain_deadline; /* loop ms */
  void (*on_drained)(sl_gateway *); /* the gateway's stop, called by drain.c when done */
  uint64_t msg_counter;
  char boot_id[12];
  uint64_t started_ms;
  sl_lathist hook_times[SL_HOOK_TIMED_KINDS]; /* sampled hook timing, across reloads (hooks.h) */
  sl_hookreg *hookregs; /* C hook registrations (sluice_set_hooks), survive reloads */
  size_t nhookregs;
  sl_gateway_ops ops; /* the embedder: reload, stats, stop, free (gateway.h) */
  void *ops_ud;
  sl_heap acks; /* sl_inflight by ack deadline (no periodic scans), acks.c */
  uv_timer_t ack_timer;
  sl_heap parked; /* parked sl_socket by expiry (recovery), sio.c */
  uv_timer_t park_timer;
  uint32_t topic_ids;                 /* the last sl_topic.tid given out */
  uv_fs_event_t watch, watch_scripts; /* config directory watches (hot reload) */
  uv_timer_t reload_timer;            /* debounce for the watches */
  uint64_t reloads_ok, reloads_failed;
  double last_reload_ms;
  uint64_t
      api_refused[SL_API_REFUSED_COUNT]; /* by SL_API_REFUSED_* (api.c), sluice_api_refused_total */
  uint64_t eio_refused_origin;           /* Engine.IO requests refused by cors.origins (eio.c) */
  uint64_t eio_refused_allow;            /* handshakes refused by allow_request (eio.c) */
  /* the objects every connection has, without malloc's header and rounding (pool.h): TCP
   * sl_conn (net.c), sl_session (eio.c), sl_socket and sl_lane without a recovery part
   * (sio.c, lanes.c) */
  sl_pool pool_conn, pool_session, pool_socket, pool_lane;
  sl_mq early; /* what the socket inside its onConnect emitted (one at a time), sio.c */
  int closing_handles;
  void (*on_stopped)(sl_gateway *, void *);
  void *on_stopped_arg;
};

#endif
